//! What each figure is (docs/design.md §5): the table it is counted from, which rows count,
//! and the value of a cell. Both ways of answering (raw tables, rollups) and the rollup job
//! build their SQL from these definitions and nothing else, which is what keeps them equal.

/// Where a figure is counted from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    Events,
    Visits,
    Accounts,
    Rooms,
}

impl Source {
    pub const ALL: [Source; 4] = [
        Source::Visits,
        Source::Events,
        Source::Rooms,
        Source::Accounts,
    ];

    pub fn table(self) -> &'static str {
        match self {
            Source::Events => "events",
            Source::Visits => "visits",
            Source::Accounts => "accounts",
            Source::Rooms => "rooms",
        }
    }

    /// The local time of a row (visits: the UTC day itself, as Synapse writes it).
    pub fn time(self, timezone: &str) -> String {
        let local = |column: &str| {
            format!("arrow_cast({column}, 'Timestamp(Microsecond, Some(\"{timezone}\"))')")
        };
        match self {
            Source::Events | Source::Accounts => local("ts"),
            Source::Rooms => local("created_at"),
            Source::Visits => "day".into(),
        }
    }

    /// The UTC date the raw table is partitioned by (rooms are a view: none).
    pub fn partition_column(self) -> Option<&'static str> {
        match self {
            Source::Events | Source::Accounts => Some("date"),
            Source::Visits => Some("day"),
            Source::Rooms => None,
        }
    }

    /// The column naming the user a row is about (the distinct users of a cell).
    pub fn user(self) -> &'static str {
        match self {
            Source::Events => "sender",
            Source::Rooms => "creator",
            Source::Visits | Source::Accounts => "\"user\"",
        }
    }

    /// The breakdowns of its figures: by server and e-mail domain, and by platform and client
    /// family for visits.
    pub fn dims(self) -> &'static [Dim] {
        match self {
            Source::Visits => &[Dim::Server, Dim::Domain, Dim::Platform, Dim::Family],
            _ => &[Dim::Server, Dim::Domain],
        }
    }

    /// The relation its figures are counted from: the table, where a visit of schema version
    /// 1 (no client family) is of the family `unknown`, so that every visit has one.
    pub fn relation(self) -> String {
        match self {
            Source::Visits => format!(
                "(SELECT * EXCLUDE (family), coalesce(family, '{UNKNOWN_FAMILY}') AS family FROM visits)"
            ),
            other => other.table().to_owned(),
        }
    }
}

/// The client family of a visit the hooks did not classify (schema version 1).
pub const UNKNOWN_FAMILY: &str = "unknown";

/// A breakdown column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dim {
    Server,
    Domain,
    Platform,
    Family,
}

/// How many breakdown columns there are.
pub const DIM_COUNT: usize = 4;

/// A cell's key in each breakdown column, by `Dim::index` (`None`: not grouped by it).
pub type DimKeys<T = String> = [Option<T>; DIM_COUNT];

impl Dim {
    pub const ALL: [Dim; DIM_COUNT] = [Dim::Server, Dim::Domain, Dim::Platform, Dim::Family];

    pub fn name(self) -> &'static str {
        match self {
            Dim::Server => "server",
            Dim::Domain => "domain",
            Dim::Platform => "platform",
            Dim::Family => "family",
        }
    }

    pub fn parse(name: &str) -> Option<Dim> {
        Dim::ALL.into_iter().find(|d| d.name() == name)
    }

    pub(crate) fn bit(self) -> u8 {
        match self {
            Dim::Server => 1,
            Dim::Domain => 2,
            Dim::Platform => 4,
            Dim::Family => 8,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Dim::Server => 0,
            Dim::Domain => 1,
            Dim::Platform => 2,
            Dim::Family => 3,
        }
    }
}

/// A set of breakdown columns a cell is grouped by (a bit per `Dim`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DimSet(pub u8);

impl DimSet {
    pub const NONE: DimSet = DimSet(0);

    pub fn with(self, dim: Dim) -> DimSet {
        DimSet(self.0 | dim.bit())
    }

    pub fn contains(self, dim: Dim) -> bool {
        self.0 & dim.bit() != 0
    }

    pub fn dims(self) -> impl Iterator<Item = Dim> {
        Dim::ALL.into_iter().filter(move |d| self.contains(*d))
    }

    /// Every subset of `dims` (the cube's grouping sets), the empty one first.
    pub fn subsets(dims: &[Dim]) -> Vec<DimSet> {
        (0u32..1 << dims.len())
            .map(|bits| {
                dims.iter()
                    .enumerate()
                    .filter(|(i, _)| bits & (1 << i) != 0)
                    .fold(DimSet::NONE, |set, (_, d)| set.with(*d))
            })
            .collect()
    }
}

/// One figure's definition.
#[derive(Clone, Copy, Debug)]
pub struct Figure {
    pub name: &'static str,
    pub description: &'static str,
    pub source: Source,
    /// Which rows count.
    pub filter: &'static str,
    /// The value of a cell (`t` is the row's local time); `None` counts rows.
    pub value: Option<&'static str>,
}

impl Figure {
    pub fn value_sql(&self) -> &'static str {
        self.value.unwrap_or("COUNT(*)")
    }

    /// The SQL of a cell's key (docs/design.md §4): the sum of the record keys of the
    /// distinct users behind it; for the net change of accounts, of the accounts opened
    /// minus those closed, so that its running sum is the key of the accounts open.
    pub fn key_sql(&self) -> String {
        let user = self.source.user();
        if self.name == ACCOUNT_CHANGES.name {
            let key = format!("({user} & {})", super::disclosure::RECORD_KEY_MASK);
            return format!(
                "SUM(CASE change WHEN 'created' THEN {key} WHEN 'reactivated' THEN {key} \
                 WHEN 'deactivated' THEN -{key} ELSE 0 END) FILTER (WHERE {filter})",
                filter = self.filter
            );
        }
        super::disclosure::cell_key_sql(user, self.filter)
    }
}

/// Every figure computed by grouping rows, in the order the API returns them.
pub const FIGURES: &[Figure] = &[
    Figure {
        name: "active_users",
        description: "Distinct users with at least one visit, platform known (Tchap's MAU in a month).",
        source: Source::Visits,
        filter: "platform <> 'unknown'",
        value: Some("COUNT(DISTINCT \"user\")"),
    },
    Figure {
        name: "messages",
        description: "Messages sent (m.room.message and m.room.encrypted by local senders), reactions and edits excluded. In encrypted rooms the server sees only m.room.encrypted, so encrypted call signalling is counted here too, as Synapse's own statistics count it.",
        source: Source::Events,
        filter: "type IN ('m.room.message', 'm.room.encrypted') AND (rel_type IS NULL OR rel_type NOT IN ('m.annotation', 'm.replace'))",
        value: None,
    },
    Figure {
        name: "threads",
        description: "Messages sent in threads (rel_type m.thread); also counted in messages.",
        source: Source::Events,
        filter: "type IN ('m.room.message', 'm.room.encrypted') AND rel_type = 'm.thread'",
        value: None,
    },
    Figure {
        name: "reactions",
        description: "Reactions (m.reaction) in unencrypted rooms; reactions in encrypted rooms are invisible to the server.",
        source: Source::Events,
        filter: "type = 'm.reaction'",
        value: None,
    },
    Figure {
        name: "rooms_created",
        description: "Rooms created (m.room.create), every kind.",
        source: Source::Rooms,
        filter: "true",
        value: None,
    },
    Figure {
        name: "rooms_created_direct",
        description: "Direct rooms created.",
        source: Source::Rooms,
        filter: "kind = 'direct'",
        value: None,
    },
    Figure {
        name: "rooms_created_private",
        description: "Private rooms created (invite-only or restricted).",
        source: Source::Rooms,
        filter: "kind = 'private'",
        value: None,
    },
    Figure {
        name: "rooms_created_external",
        description: "External rooms created (encrypted, open to external users).",
        source: Source::Rooms,
        filter: "kind = 'external'",
        value: None,
    },
    Figure {
        name: "rooms_created_forum",
        description: "Forums created (public, unencrypted).",
        source: Source::Rooms,
        filter: "kind = 'forum'",
        value: None,
    },
    Figure {
        name: "rooms_created_space",
        description: "Spaces created.",
        source: Source::Rooms,
        filter: "kind = 'space'",
        value: None,
    },
    Figure {
        name: "accounts_created",
        description: "Regular accounts created.",
        source: Source::Accounts,
        filter: "change = 'created' AND user_type = 'regular'",
        value: None,
    },
    Figure {
        name: "calls_started",
        description: "Calls the server can see start: 1:1 call invites in unencrypted rooms, and group calls (a room's MatrixRTC call.member joins on a day). 1:1 calls in encrypted rooms are invisible (they travel as m.room.encrypted), so this undercounts calls and is no measure of their adoption.",
        source: Source::Events,
        filter: "type = 'm.call.invite' OR (type = 'm.call.member' AND call = 'join')",
        value: Some(
            "COUNT(DISTINCT CASE WHEN type = 'm.call.invite' THEN encode(event, 'hex') ELSE concat(CAST(room AS VARCHAR), ' ', to_char(t, '%Y-%m-%d')) END)",
        ),
    },
    Figure {
        name: "call_participants",
        description: "Distinct users who joined a group call (MatrixRTC) or placed or answered a 1:1 call the server can see (unencrypted rooms only for 1:1 calls).",
        source: Source::Events,
        filter: "(type = 'm.call.member' AND call = 'join') OR type IN ('m.call.invite', 'm.call.answer')",
        value: Some("COUNT(DISTINCT sender)"),
    },
    Figure {
        name: "live_location_shares",
        description: "Live location shares started (m.beacon_info with live = true).",
        source: Source::Events,
        filter: "type = 'm.beacon_info' AND live",
        value: None,
    },
];

/// The net change of regular accounts (created and reactivated minus deactivated): what
/// `total_active_accounts` sums month by month. Not published on its own.
pub const ACCOUNT_CHANGES: Figure = Figure {
    name: "account_changes",
    description: "Net change of regular accounts: created and reactivated, minus deactivated.",
    source: Source::Accounts,
    filter: "user_type = 'regular'",
    value: Some(
        "SUM(CASE change WHEN 'created' THEN 1 WHEN 'reactivated' THEN 1 WHEN 'deactivated' THEN -1 ELSE 0 END)",
    ),
};

/// The figures of the move between the classic Tchap mobile apps and Tchap X, in the order
/// `grouping::client_moves` counts them (docs/design.md §5).
pub const CLIENT_MOVES: [&str; 3] = [
    "client_moves_to_x",
    "client_moves_to_classic",
    "clients_both",
];

/// Monthly figures computed on their own (running totals, windows across months).
pub const SPECIAL_FIGURES: [&str; 5] = [
    "total_active_accounts",
    "r30_users",
    CLIENT_MOVES[0],
    CLIENT_MOVES[1],
    CLIENT_MOVES[2],
];

/// The special figures that count users over a window reaching before the month, by server
/// and domain: r30 (60 days) and the client moves (the month before); `grouping::r30` and
/// `grouping::client_moves` count them.
pub const MONTHLY_USER_FIGURES: [&str; 4] = [
    "r30_users",
    CLIENT_MOVES[0],
    CLIENT_MOVES[1],
    CLIENT_MOVES[2],
];

/// What a figure counts, for people: the definitions of `FIGURES` and the special figures.
pub fn description(name: &str) -> Option<&'static str> {
    match name {
        "total_active_accounts" => Some(
            "Regular accounts open at the end of the month: every account created, minus deactivated, plus reactivated, since the beginning of the history.",
        ),
        "r30_users" => Some(
            "Retained users (Synapse's r30v2) at the end of the month: users seen, platform known, on two days more than 30 days apart within the 60 days up to the month's last day.",
        ),
        "client_moves_to_x" => Some(
            "Users who moved to Tchap X: seen on a classic Tchap mobile app (Android, iOS, NEO) in the month before, and this month on Tchap X and on no classic mobile app.",
        ),
        "client_moves_to_classic" => Some(
            "Users who went back to the classic apps: seen on Tchap X in the month before, and this month on a classic Tchap mobile app and not on Tchap X.",
        ),
        "clients_both" => {
            Some("Users seen this month on both a classic Tchap mobile app and Tchap X.")
        }
        _ => FIGURES
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.description),
    }
}

/// Whether `name` is a figure the API knows.
pub fn is_known(name: &str) -> bool {
    SPECIAL_FIGURES.contains(&name) || FIGURES.iter().any(|f| f.name == name)
}

/// How a room's kind is read from its initial state (docs/design.md §5), over columns
/// `room_type`, `is_direct`, `join_rule`, `encrypted`, `access_rule` (booleans may be NULL).
pub const ROOM_KIND: &str = "CASE
    WHEN room_type = 'm.space' THEN 'space'
    WHEN coalesce(is_direct, false) THEN 'direct'
    WHEN join_rule = 'public' AND NOT coalesce(encrypted, false) THEN 'forum'
    WHEN coalesce(encrypted, false) AND access_rule = 'unrestricted' THEN 'external'
    ELSE 'private'
  END";

/// The views meant for publication, `monthly_figures` and `daily_figures`: every figure of
/// `FIGURES` by period, in total and by server, domain (and platform for visits), each value
/// published by the cell key rule (`mx_publish`, docs/design.md §4: NULL and `suppressed`
/// when withheld). The same definitions and values as the figures API, as SQL an analyst can
/// join and filter; withheld domains are not named (one row of key `*` stands for them). The
/// API adds MoM, YoY, peak days, the total of active accounts, and the cells nobody is behind
/// (withheld), which have no row here.
pub fn publication_views(timezone: &str) -> [String; 2] {
    [("monthly_figures", "%Y-%m"), ("daily_figures", "%Y-%m-%d")].map(|(name, format)| {
        let selects: Vec<String> = FIGURES
            .iter()
            .map(|figure| {
                let source = figure.source;
                let dims: Vec<&str> = source.dims().iter().map(|d| d.name()).collect();
                let breakdown: String = dims
                    .iter()
                    .map(|d| format!("WHEN grouping({d}) = 0 THEN '{d}' "))
                    .collect();
                let key: String = dims
                    .iter()
                    .map(|d| format!("WHEN grouping({d}) = 0 THEN CAST({d} AS VARCHAR) "))
                    .collect();
                let sets: Vec<String> = std::iter::once("(period)".to_owned())
                    .chain(dims.iter().map(|d| format!("(period, {d})")))
                    .collect();
                format!(
                    "SELECT '{name}' AS figure, period, CASE {breakdown}ELSE 'total' END AS breakdown, \
                     CASE {key}END AS key, CAST({value} AS DOUBLE) AS value, COUNT(DISTINCT {user}) AS users, \
                     CAST({cell_key} AS BIGINT) AS cell_key \
                     FROM (SELECT *, to_char(t, '{format}') AS period \
                           FROM (SELECT *, {time} AS t FROM {table} WHERE {filter}) AS w) AS x \
                     GROUP BY GROUPING SETS ({sets})",
                    name = figure.name,
                    value = figure.value_sql(),
                    user = source.user(),
                    time = source.time(timezone),
                    table = source.relation(),
                    filter = figure.filter,
                    cell_key = super::disclosure::cell_key_sql(source.user(), "true"),
                    sets = sets.join(", "),
                )
            })
            .collect();
        format!(
            "CREATE VIEW {name} AS SELECT DISTINCT figure, period, breakdown, \
             CASE WHEN breakdown = 'domain' AND value IS NULL THEN '{small}' ELSE key END AS key, \
             value, value IS NULL AS suppressed \
             FROM (SELECT figure, period, breakdown, key, {publish}(value, users, cell_key) AS value \
                   FROM ({cells}) AS cells) AS published",
            publish = super::disclosure::PUBLISH_FUNCTION,
            small = super::publish::SMALL_DOMAINS,
            cells = selects.join(" UNION ALL ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_are_the_cube() {
        let sets = DimSet::subsets(&[Dim::Server, Dim::Domain]);
        assert_eq!(
            sets,
            [
                DimSet::NONE,
                DimSet::NONE.with(Dim::Server),
                DimSet::NONE.with(Dim::Domain),
                DimSet::NONE.with(Dim::Server).with(Dim::Domain)
            ]
        );
        assert_eq!(DimSet::subsets(Source::Visits.dims()).len(), 16);
    }

    #[test]
    fn every_figure_has_a_description() {
        for figure in FIGURES {
            assert_eq!(description(figure.name), Some(figure.description));
        }
        for name in SPECIAL_FIGURES {
            assert!(description(name).is_some(), "{name}");
        }
        assert!(!is_known("account_changes"));
    }
}
