//! The resource types the emulator serves, and where they live in the URL space.

/// Static description of one API resource (one row of `GET /api/v1`).
#[derive(Debug)]
pub(crate) struct Resource {
    /// URL segment, e.g. `secrets`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    /// API group; empty for the core group.
    pub group: &'static str,
    /// `apiVersion` value of its objects: `v1` or `events.k8s.io/v1`.
    pub api_version: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Served for reading only (get, list, watch): the core/v1 view of events.
    pub read_only: bool,
}

pub(crate) static NAMESPACES: Resource = Resource {
    plural: "namespaces",
    singular: "namespace",
    kind: "Namespace",
    list_kind: "NamespaceList",
    group: "",
    api_version: "v1",
    namespaced: false,
    short_names: &["ns"],
    read_only: false,
};

pub(crate) static SECRETS: Resource = Resource {
    plural: "secrets",
    singular: "secret",
    kind: "Secret",
    list_kind: "SecretList",
    group: "",
    api_version: "v1",
    namespaced: true,
    short_names: &[],
    read_only: false,
};

pub(crate) static SERVICE_ACCOUNTS: Resource = Resource {
    plural: "serviceaccounts",
    singular: "serviceaccount",
    kind: "ServiceAccount",
    list_kind: "ServiceAccountList",
    group: "",
    api_version: "v1",
    namespaced: true,
    short_names: &["sa"],
    read_only: false,
};

pub(crate) static CONFIG_MAPS: Resource = Resource {
    plural: "configmaps",
    singular: "configmap",
    kind: "ConfigMap",
    list_kind: "ConfigMapList",
    group: "",
    api_version: "v1",
    namespaced: true,
    short_names: &["cm"],
    read_only: false,
};

pub(crate) static EVENTS: Resource = Resource {
    plural: "events",
    singular: "event",
    kind: "Event",
    list_kind: "EventList",
    group: "events.k8s.io",
    api_version: "events.k8s.io/v1",
    namespaced: true,
    short_names: &["ev"],
    read_only: false,
};

/// The core/v1 view of the same events (`kubectl events`, `kubectl get
/// events`); see [`core_events`](super::core_events).
pub(crate) static CORE_EVENTS: Resource = Resource {
    plural: "events",
    singular: "event",
    kind: "Event",
    list_kind: "EventList",
    group: "",
    api_version: "v1",
    namespaced: true,
    short_names: &["ev"],
    read_only: true,
};

/// Resources of the core group (`/api/v1`).
pub(crate) static CORE: &[&Resource] = &[&NAMESPACES, &SECRETS, &SERVICE_ACCOUNTS, &CONFIG_MAPS, &CORE_EVENTS];
/// Resources of `events.k8s.io/v1`.
pub(crate) static EVENTS_GROUP: &[&Resource] = &[&EVENTS];

/// Looks up a resource by plural within one group version's list.
pub(crate) fn find(list: &[&'static Resource], plural: &str) -> Option<&'static Resource> {
    list.iter().copied().find(|r| r.plural == plural)
}

/// Looks up a resource by plural in any group (for the Rust-side helpers, where
/// `events` means `events.k8s.io/v1`).
pub(crate) fn by_plural(plural: &str) -> Option<&'static Resource> {
    find(EVENTS_GROUP, plural).or_else(|| find(CORE, plural))
}
