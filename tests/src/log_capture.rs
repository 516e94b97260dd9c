//! The process's log lines kept in memory, each as its fields, for tests that assert what
//! was logged (the delivery log): [`capture`] installs the global subscriber once per test
//! process; every event at INFO or above is kept with its `target` and `level`.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// One log line: its fields by name (`message`, `target`, `level` included), as text.
pub type Line = BTreeMap<String, String>;

/// The lines logged since [`capture`] was first called in this process.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<Line>>>);

impl Captured {
    /// The lines `keep` selects, in the order they were logged.
    pub fn lines(&self, keep: impl Fn(&Line) -> bool) -> Vec<Line> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|l| keep(l))
            .cloned()
            .collect()
    }
}

static CAPTURED: OnceLock<Captured> = OnceLock::new();

/// Starts keeping the process's log lines (once; later calls share the same lines).
///
/// # Panics
/// When another global subscriber was installed first.
pub fn capture() -> Captured {
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            tracing_subscriber::registry()
                .with(Keep(captured.clone()).with_filter(LevelFilter::INFO))
                .try_init()
                .expect("no other global subscriber in this test process");
            captured
        })
        .clone()
}

struct Keep(Captured);

impl<S: Subscriber> Layer<S> for Keep {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields(Line::new());
        event.record(&mut fields);
        let meta = event.metadata();
        fields.0.insert("target".into(), meta.target().to_owned());
        fields.0.insert("level".into(), meta.level().to_string());
        (self.0)
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(fields.0);
    }
}

struct Fields(Line);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}
