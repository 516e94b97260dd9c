//! The admin web's words, in Korean (the default: the CX team is Korean) and English. Every
//! message is a [`Msg`] variant with both texts, so a page cannot show a key that has no
//! translation.

/// A language of the admin web, chosen by the `hexride_lang` cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// 한국어.
    #[default]
    Ko,
    /// English.
    En,
}

impl Lang {
    /// The cookie value and the `lang` attribute.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ko => "ko",
            Lang::En => "en",
        }
    }

    /// `ko` or `en`; anything else is the default.
    pub fn from_code(code: &str) -> Self {
        if code == "en" { Lang::En } else { Lang::Ko }
    }

    /// The other language, for the switch.
    pub fn other(self) -> Self {
        match self {
            Lang::Ko => Lang::En,
            Lang::En => Lang::Ko,
        }
    }

    /// `text` in this language.
    pub fn t(self, text: Msg) -> &'static str {
        text.text(self)
    }
}

macro_rules! messages {
    ($($name:ident => $ko:literal, $en:literal;)*) => {
        /// A message of the admin web.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Msg {
            $(#[doc = $en] $name,)*
        }

        impl Msg {
            /// Its text in `lang`.
            pub fn text(self, lang: Lang) -> &'static str {
                match (self, lang) {
                    $((Msg::$name, Lang::Ko) => $ko, (Msg::$name, Lang::En) => $en,)*
                }
            }
        }
    };
}

messages! {
    Title => "hexride 관리자", "hexride admin";
    LanguageName => "English", "한국어";
    SwitchLanguage => "언어 바꾸기", "Switch language";
    MainNav => "주 메뉴", "Main menu";
    LogIn => "로그인", "Log in";
    LogOut => "로그아웃", "Log out";
    Email => "이메일", "E-mail";
    Password => "비밀번호", "Password";
    LoginTitle => "직원 로그인", "Staff login";
    LoginHint => "CX 또는 관리자 계정으로 로그인하세요.", "Log in with a CX or admin account.";
    SessionEnded => "세션이 끝났습니다. 다시 로그인하세요.", "Your session has ended. Please log in again.";
    LoggedOut => "로그아웃했습니다.", "You have logged out.";
    SignedInAs => "로그인:", "Signed in as";
    Riders => "라이더 찾기", "Find riders";
    SearchLabel => "이메일, 전화번호 또는 이름 (일부)", "E-mail, phone or name (any part)";
    Search => "찾기", "Search";
    NoResults => "찾은 라이더가 없습니다.", "No riders found.";
    NextPage => "다음 페이지", "Next page";
    FirstPage => "첫 페이지", "First page";
    Name => "이름", "Name";
    Phone => "전화번호", "Phone";
    Role => "역할", "Role";
    Status => "상태", "Status";
    Active => "활성", "Active";
    Withdrawn => "탈퇴", "Withdrawn";
    WithdrawnAt => "탈퇴 시각", "Withdrawn at";
    JoinedAt => "가입 시각", "Joined at";
    LastLogin => "마지막 로그인", "Last login";
    Profile => "프로필", "Profile";
    Policies => "보험", "Policies";
    NoPolicies => "보험이 없습니다.", "No policies.";
    PolicyNumber => "증권 번호", "Policy number";
    HourlyPremium => "시간당 보험료", "Hourly premium";
    CoverageStart => "보장 시작", "Coverage start";
    Expiry => "만료", "Expiry";
    Reason => "사유", "Reason";
    ExpiredBy => "처리자", "Expired by";
    Open => "열기", "Open";
    EventTrail => "이벤트 기록", "Event trail";
    NoEvents => "이벤트가 없습니다.", "No events.";
    Event => "이벤트", "Event";
    WrittenAt => "기록 시각", "Written at";
    Delivery => "전달", "Delivery";
    AppliedBy => "처리한 소비자", "Applied by";
    NotAppliedYet => "아직 처리되지 않음", "Not applied yet";
    Pending => "대기 중", "Pending";
    Sent => "전송됨", "Sent";
    Dead => "실패 (DLT)", "Failed (dead)";
    Policy => "보험 증권", "Policy";
    BackToRider => "라이더로 돌아가기", "Back to the rider";
    Statement => "보험료 명세", "Premium statement";
    Period => "기간", "Period";
    From => "시작", "From";
    To => "끝", "To";
    Show => "보기", "Show";
    Sessions => "운행 세션", "Driving sessions";
    NoSessions => "이 기간에 운행 세션이 없습니다.", "No driving sessions in this period.";
    Started => "시작", "Started";
    Ended => "종료", "Ended";
    StillOpen => "운행 중", "Still open";
    InsuredMinutes => "보장 시간(분)", "Insured minutes";
    Premium => "보험료", "Premium";
    Total => "합계", "Total";
    AuditTrail => "변경 기록", "Audit trail";
    When => "시각", "When";
    Who => "누가", "Who";
    What => "무엇을", "What";
    Note => "메모", "Note";
    PreviousExpiry => "이전 만료", "Previous expiry";
    NewExpiry => "새 만료", "New expiry";
    InsurerCallbacks => "보험사 콜백", "Insurer callbacks";
    NoCallbacks => "받은 보험사 콜백이 없습니다.", "No insurer callbacks received.";
    InsurerEventId => "보험사 이벤트 ID", "Insurer event id";
    CancelledAt => "해지 시각", "Cancelled at";
    ReceivedAt => "수신 시각", "Received at";
    Outcome => "결과", "Outcome";
    ExpirePolicy => "보험 만료 처리", "Expire this policy";
    EffectiveAt => "만료 적용 시각 (KST)", "Effective at (KST)";
    EffectiveHint => "기본값은 지금입니다. 보장 시작 이후, 지금 이전이어야 합니다.", "Defaults to now. Must be after the coverage start and not in the future.";
    NoteHint => "라이더가 보험사에 언제 해지했는지 등, 이 처리의 이유를 적어 주세요.", "Say why: when the rider cancelled with the insurer, who asked, ….";
    PreviewChange => "변경 내용 미리 보기", "Preview the change";
    Preview => "미리 보기: 만료 처리로 바뀌는 내용", "Preview: what the expiry changes";
    Before => "처리 전", "Before";
    After => "처리 후", "After";
    NoLongerBilled => "더 이상 청구되지 않는 보험료", "Premium no longer billed";
    NothingChanges => "이 보험은 이미 그 시각이나 더 이전에 만료되었습니다. 아무것도 바뀌지 않습니다.", "This policy already expired at or before that time: nothing changes.";
    Confirm => "만료 처리 확정", "Confirm the expiry";
    Cancel => "취소", "Cancel";
    ExpiredDone => "만료 처리했습니다. 변경 기록에 남았습니다.", "The policy is expired; the audit trail records it.";
    ExpiryUnchanged => "이미 만료된 보험이라 바뀐 것이 없습니다.", "The policy had already expired: nothing changed.";
    Manage => "관리", "Manage";
    Products => "상품", "Products";
    Price => "가격", "Price";
    Stock => "재고", "Stock";
    CreateProduct => "상품 등록", "Create a product";
    Save => "저장", "Save";
    Create => "만들기", "Create";
    Campaigns => "쿠폰 캠페인", "Coupon campaigns";
    CreateCampaign => "캠페인 만들기", "Create a campaign";
    DiscountKind => "할인 방식", "Discount kind";
    Fixed => "정액 (원)", "Fixed (KRW)";
    Percent => "정률 (%)", "Percent";
    DiscountValue => "할인 값", "Discount value";
    Quantity => "총 수량", "Total quantity";
    StartsAt => "시작 (KST, 비우면 지금)", "Starts at (KST, empty = now)";
    EndsAt => "종료 (KST, 비우면 없음)", "Ends at (KST, empty = never)";
    CampaignCreated => "캠페인을 만들었습니다:", "Campaign created:";
    Discount => "할인", "Discount";
    IssuedOfTotal => "발급 / 총 수량", "Issued / total";
    Starts => "시작", "Starts";
    Ends => "종료", "Ends";
    Never => "없음", "never";
    NoCampaigns => "캠페인이 없습니다.", "No campaigns yet.";
    Plans => "보험 상품", "Insurance plans";
    CreatePlan => "보험 상품 만들기", "Create a plan";
    Retired => "판매 중지", "Retired";
    Retire => "판매 중지", "Retire";
    Reactivate => "다시 판매", "Offer again";
    StaffAccounts => "직원 계정", "Staff accounts";
    CreateStaff => "CX 계정 만들기", "Create a CX account";
    StaffCreated => "계정을 만들었습니다:", "Account created:";
    Saved => "저장했습니다.", "Saved.";
    ErrorTitle => "요청을 처리할 수 없습니다", "The request could not be handled";
    Forbidden => "이 페이지를 볼 권한이 없습니다.", "You may not see this page.";
    BadCsrf => "폼이 만료되었거나 다른 사이트에서 보낸 요청입니다. 페이지를 새로 고친 뒤 다시 시도하세요.", "The form has expired or came from another site. Reload the page and try again.";
    Required => "필수", "required";
    Back => "돌아가기", "Back";
    TimesNote => "시각은 한국 시간(KST)이며 괄호 안은 UTC입니다.", "Times are Korea time (KST), with UTC in brackets.";
    ReasonAdminRequest => "CX/관리자 요청", "CX/admin request";
    ReasonInsurerCancellation => "보험사 해지", "Insurer cancellation";
    ReasonMemberWithdrawn => "회원 탈퇴", "Member withdrawn";
    Licence => "운전면허", "Driving licence";
    NoLicence => "등록된 운전면허가 없습니다.", "No driving licence registered.";
    LicenceNumber => "면허 번호", "Licence number";
    ExpiresOn => "유효기간", "Expires on";
    LastVerified => "마지막 확인", "Last verified";
    RegisteredAt => "등록", "Registered";
    LicenceValid => "유효", "Valid";
    LicenceSuspended => "정지", "Suspended";
    LicenceExpired => "만료", "Expired";
    LicenceChecks => "면허 확인 기록", "Licence checks";
    NoLicenceChecks => "확인 기록이 없습니다.", "No checks yet.";
    CheckedAt => "확인 시각", "Checked at";
    CheckedBy => "확인 주체", "Checked by";
}
