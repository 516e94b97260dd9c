//! Commit positions: MariaDB GTID positions and MySQL GTID sets, parsed so a replica's
//! position can be compared with a commit token without asking the server.
//!
//! - MariaDB: `domain-server-seq`, one per replication domain, comma-separated
//!   (`0-1-42,1-2-7`). Within a domain sequence numbers only grow (`gtid_strict_mode`), so a
//!   position covers another when it is at least as far in every domain of the other.
//! - MySQL: `source_uuid:interval[:interval…]`, comma-separated
//!   (`3e11fa47-…:1-5:7`); a set covers another when it contains every transaction of it.

use std::collections::BTreeMap;
use std::fmt;

/// Which server speaks: their GTID formats, variables and wait functions differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// MariaDB 10.6+.
    MariaDb,
    /// MySQL 8.0+.
    MySql,
}

impl Flavour {
    /// From `select version()`: MariaDB says so (`10.11.6-MariaDB-0+deb12u1`).
    pub fn from_version(version: &str) -> Self {
        if version.to_ascii_lowercase().contains("mariadb") {
            Flavour::MariaDb
        } else {
            Flavour::MySql
        }
    }

    /// `commit`, then the statement that reads the session's commit position right after it,
    /// on the same connection, in one message of two statements (one round trip): MariaDB's
    /// `@@last_gtid` is that commit's GTID (empty without `log_bin`); MySQL's
    /// `@@gtid_executed` is every transaction executed so far, which includes it.
    pub fn commit_and_position_sql(self) -> &'static str {
        match self {
            Flavour::MariaDb => "commit; select @@last_gtid",
            Flavour::MySql => "commit; select @@global.gtid_executed",
        }
    }

    /// The statement that lifts [`Self::session_sql`]'s statement timeout from a session
    /// (migrations).
    pub fn no_statement_timeout_sql(self) -> &'static str {
        match self {
            Flavour::MariaDb => "set session max_statement_time = 0",
            Flavour::MySql => "set session max_execution_time = 0",
        }
    }

    /// The statement a session runs when it connects: `read committed` (see the dialect),
    /// the server-side statement timeout in `timeout_ms` (MariaDB: `max_statement_time` in
    /// seconds, for every statement; MySQL: `max_execution_time` in milliseconds, for
    /// `select` only), and lock waits bounded by the same time (whole seconds).
    pub fn session_sql(self, timeout_ms: u128, read_only: bool) -> String {
        let timeout = match self {
            Flavour::MariaDb => format!("max_statement_time = {:.3}", timeout_ms as f64 / 1000.0),
            Flavour::MySql => format!("max_execution_time = {timeout_ms}"),
        };
        let access = if read_only { "read only" } else { "read write" };
        // Metadata and row locks wait no longer than a statement may run (the defaults are a
        // year and 50 s).
        let lock_wait = timeout_ms.div_ceil(1000).max(1);
        // MySQL 8's default rules on both servers: MariaDB's defaults lack
        // ONLY_FULL_GROUP_BY (and its check, which sees no functional dependencies, is the
        // stricter one), so a statement that passes on MariaDB passes on MySQL 8 too.
        format!(
            "set session transaction isolation level read committed, {access}; \
             set session {timeout}, lock_wait_timeout = {lock_wait}, innodb_lock_wait_timeout = {lock_wait}, \
             sql_mode = concat_ws(',', nullif(@@session.sql_mode, ''), 'ONLY_FULL_GROUP_BY', 'STRICT_TRANS_TABLES')"
        )
    }

    /// Parses a commit token or a replica's position; `None` for anything else (an empty
    /// `@@last_gtid` with binary logging off, another store's token): such a token is
    /// satisfied only by the primary.
    pub fn parse(self, text: &str) -> Option<Position> {
        match self {
            Flavour::MariaDb => MariaPosition::parse(text).map(Position::MariaDb),
            Flavour::MySql => GtidSet::parse(text).map(Position::MySql),
        }
    }
}

/// A replica's applied position, or a commit token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// A MariaDB GTID position.
    MariaDb(MariaPosition),
    /// A MySQL GTID set.
    MySql(GtidSet),
}

impl Position {
    /// Whether everything `other` names is in `self`. Positions of different flavours never
    /// cover each other.
    pub fn covers(&self, other: &Position) -> bool {
        match (self, other) {
            (Position::MariaDb(a), Position::MariaDb(b)) => a.covers(b),
            (Position::MySql(a), Position::MySql(b)) => a.covers(b),
            _ => false,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::MariaDb(p) => p.fmt(f),
            Position::MySql(s) => s.fmt(f),
        }
    }
}

/// A MariaDB GTID position: per domain, the server and sequence number of the last event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MariaPosition {
    domains: BTreeMap<u32, (u32, u64)>,
}

impl MariaPosition {
    /// `0-1-42,1-2-7`; `None` when empty or malformed.
    pub fn parse(text: &str) -> Option<Self> {
        let mut position = Self::default();
        for gtid in text.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            let mut parts = gtid.split('-');
            let (domain, server, seq) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() {
                return None;
            }
            position.merge_one(domain.parse().ok()?, server.parse().ok()?, seq.parse().ok()?);
        }
        (!position.domains.is_empty()).then_some(position)
    }

    fn merge_one(&mut self, domain: u32, server: u32, seq: u64) {
        let entry = self.domains.entry(domain).or_insert((server, seq));
        if seq > entry.1 {
            *entry = (server, seq);
        }
    }

    /// Both positions' domains, each at the higher sequence number.
    pub fn merge(&mut self, other: &MariaPosition) {
        for (&domain, &(server, seq)) in &other.domains {
            self.merge_one(domain, server, seq);
        }
    }

    /// At least as far as `other` in every domain `other` has.
    pub fn covers(&self, other: &MariaPosition) -> bool {
        other
            .domains
            .iter()
            .all(|(domain, &(_, seq))| self.domains.get(domain).is_some_and(|&(_, mine)| mine >= seq))
    }
}

impl fmt::Display for MariaPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (domain, (server, seq)) in &self.domains {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{domain}-{server}-{seq}")?;
        }
        Ok(())
    }
}

/// A MySQL GTID set: per source UUID, the transaction numbers as closed intervals, sorted
/// and merged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GtidSet {
    sources: BTreeMap<String, Vec<(u64, u64)>>,
}

impl GtidSet {
    /// `uuid:1-5:7,uuid2:1-3` (whitespace and newlines, which MySQL prints in long sets,
    /// are ignored); `None` when empty or malformed.
    pub fn parse(text: &str) -> Option<Self> {
        let mut set = Self::default();
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        for source in compact.split(',').filter(|s| !s.is_empty()) {
            let mut parts = source.split(':');
            let uuid = parts.next()?.to_ascii_lowercase();
            if uuid.len() != 36 || !uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                return None;
            }
            let intervals = set.sources.entry(uuid).or_default();
            let mut any = false;
            for interval in parts {
                let (start, end) = match interval.split_once('-') {
                    Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                    None => {
                        let n = interval.parse().ok()?;
                        (n, n)
                    }
                };
                if start == 0 || end < start {
                    return None;
                }
                intervals.push((start, end));
                any = true;
            }
            if !any {
                return None;
            }
            intervals.sort_unstable();
            let mut merged: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
            for &(start, end) in intervals.iter() {
                match merged.last_mut() {
                    Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                    _ => merged.push((start, end)),
                }
            }
            *intervals = merged;
        }
        (!set.sources.is_empty()).then_some(set)
    }

    /// Contains every transaction of `other`.
    pub fn covers(&self, other: &GtidSet) -> bool {
        other.sources.iter().all(|(uuid, wanted)| {
            let Some(have) = self.sources.get(uuid) else {
                return false;
            };
            wanted
                .iter()
                .all(|&(start, end)| have.iter().any(|&(a, b)| a <= start && end <= b))
        })
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (uuid, intervals) in &self.sources {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(uuid)?;
            for &(start, end) in intervals {
                if start == end {
                    write!(f, ":{start}")?;
                } else {
                    write!(f, ":{start}-{end}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "8a94f357-aab4-11df-86ab-c80aa9429562";

    #[test]
    fn the_flavour_comes_from_the_version() {
        assert_eq!(
            Flavour::from_version("10.11.19-MariaDB-0+deb12u1-log"),
            Flavour::MariaDb
        );
        assert_eq!(Flavour::from_version("8.0.36"), Flavour::MySql);
    }

    #[test]
    fn mariadb_positions_compare_per_domain() {
        let token = MariaPosition::parse("0-1-42").expect("valid");
        let replica = MariaPosition::parse("0-1-41,1-2-9").expect("valid");
        assert!(!replica.covers(&token));
        let replica = MariaPosition::parse("1-2-9, 0-1-42").expect("valid");
        assert!(replica.covers(&token));
        // A domain the replica has not seen at all is not covered.
        assert!(!replica.covers(&MariaPosition::parse("2-1-1").expect("valid")));
        assert_eq!(replica.to_string(), "0-1-42,1-2-9");
    }

    #[test]
    fn mariadb_tokens_merge_by_the_highest_sequence_number_per_domain() {
        let mut a = MariaPosition::parse("0-1-42,1-2-3").expect("valid");
        a.merge(&MariaPosition::parse("0-3-40,1-2-8,5-1-1").expect("valid"));
        assert_eq!(a.to_string(), "0-1-42,1-2-8,5-1-1");
    }

    #[test]
    fn malformed_or_empty_positions_are_none() {
        for bad in ["", " ", "0-1", "0-1-2-3", "a-1-2", "0-1-x", "unknown", "0/16B3748"] {
            assert_eq!(MariaPosition::parse(bad), None, "{bad}");
            assert_eq!(Flavour::MariaDb.parse(bad), None, "{bad}");
        }
        for bad in [
            "",
            "nope:1-2",
            A,
            &format!("{A}:0"),
            &format!("{A}:5-3"),
            &format!("{A}:x"),
        ] {
            assert_eq!(GtidSet::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn mysql_sets_contain_intervals() {
        let executed = GtidSet::parse(&format!("{A}:1-5:7-9,\n{B}:1-3")).expect("valid");
        assert_eq!(executed.to_string(), format!("{A}:1-5:7-9,{B}:1-3"));
        assert!(executed.covers(&GtidSet::parse(&format!("{A}:3")).expect("valid")));
        assert!(executed.covers(&GtidSet::parse(&format!("{A}:1-5,{B}:2")).expect("valid")));
        assert!(!executed.covers(&GtidSet::parse(&format!("{A}:6")).expect("valid")));
        assert!(!executed.covers(&GtidSet::parse(&format!("{A}:5-7")).expect("valid")));
        assert!(!executed.covers(&GtidSet::parse("00000000-0000-0000-0000-000000000000:1").expect("valid")));
        // Adjacent intervals merge.
        assert_eq!(
            GtidSet::parse(&format!("{A}:1-3:4-6:8")).expect("valid").to_string(),
            format!("{A}:1-6:8")
        );
    }

    #[test]
    fn positions_of_different_flavours_never_cover_each_other() {
        let maria = Flavour::MariaDb.parse("0-1-1").expect("valid");
        let mysql = Flavour::MySql.parse(&format!("{A}:1")).expect("valid");
        assert!(!maria.covers(&mysql));
        assert!(!mysql.covers(&maria));
        assert!(maria.covers(&maria));
    }

    #[test]
    fn sessions_get_the_flavours_timeout_variable() {
        let maria = Flavour::MariaDb.session_sql(10_000, true);
        assert!(maria.contains("max_statement_time = 10.000"), "{maria}");
        assert!(maria.contains("read committed, read only"), "{maria}");
        let mysql = Flavour::MySql.session_sql(2_500, false);
        assert!(mysql.contains("max_execution_time = 2500"), "{mysql}");
        assert!(mysql.contains("read write"), "{mysql}");
        assert!(mysql.contains("lock_wait_timeout = 3,"), "{mysql}");
        assert!(mysql.contains("'ONLY_FULL_GROUP_BY'"), "{mysql}");
    }
}
