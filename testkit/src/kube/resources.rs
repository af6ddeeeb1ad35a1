//! The resource types the emulator serves, and where they live in the URL space.

/// Static description of one API resource.
#[derive(Debug)]
pub(crate) struct Resource {
    /// URL segment, e.g. `secrets`.
    pub plural: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    /// API group; empty for the core group.
    pub group: &'static str,
    /// `apiVersion` value of its objects: `v1` or `events.k8s.io/v1`.
    pub api_version: &'static str,
    pub namespaced: bool,
    /// Served for reading only (get, list, watch). Namespaces: regcred never
    /// writes them, the test writes them through [`KubeApi`](super::KubeApi)'s
    /// helpers, and any other writer is refused with 405 rather than emulated.
    pub read_only: bool,
    /// Served for merge patches. Events: regcred only creates them, and the
    /// rules of an Event update are not emulated, so a PATCH is refused
    /// with 405 rather than half checked.
    pub patchable: bool,
}

impl Resource {
    /// The group and kind of the apiserver's internal type for this resource,
    /// which validation (`X "name" is invalid`) and delete preconditions name.
    /// Every resource served here is a core type inside the apiserver:
    /// `events.k8s.io/v1` Events are converted to and stored as core Events,
    /// so their errors say `Event`, with no group (checked against v1.34).
    /// Leases are `coordination.k8s.io` inside the apiserver too.
    pub fn internal_kind(&self) -> (&'static str, &'static str) {
        match self.plural {
            "leases" => (self.group, self.kind),
            _ => ("", self.kind),
        }
    }

    const fn namespaced(plural: &'static str, kind: &'static str, list_kind: &'static str) -> Resource {
        Resource {
            plural,
            kind,
            list_kind,
            group: "",
            api_version: "v1",
            namespaced: true,
            read_only: false,
            patchable: true,
        }
    }
}

pub(crate) static NAMESPACES: Resource =
    Resource { namespaced: false, read_only: true, ..Resource::namespaced("namespaces", "Namespace", "NamespaceList") };
pub(crate) static SECRETS: Resource = Resource::namespaced("secrets", "Secret", "SecretList");
pub(crate) static SERVICE_ACCOUNTS: Resource =
    Resource::namespaced("serviceaccounts", "ServiceAccount", "ServiceAccountList");
pub(crate) static EVENTS: Resource = Resource {
    group: "events.k8s.io",
    api_version: "events.k8s.io/v1",
    patchable: false,
    ..Resource::namespaced("events", "Event", "EventList")
};

pub(crate) static LEASES: Resource = Resource {
    group: "coordination.k8s.io",
    api_version: "coordination.k8s.io/v1",
    ..Resource::namespaced("leases", "Lease", "LeaseList")
};

/// Resources of the core group (`/api/v1`).
pub(crate) static CORE: &[&Resource] = &[&NAMESPACES, &SECRETS, &SERVICE_ACCOUNTS];
/// Resources of `events.k8s.io/v1`.
pub(crate) static EVENTS_GROUP: &[&Resource] = &[&EVENTS];
/// Resources of `coordination.k8s.io/v1`.
pub(crate) static COORDINATION_GROUP: &[&Resource] = &[&LEASES];

/// Looks up a resource by plural within one group version's list.
pub(crate) fn find(list: &[&'static Resource], plural: &str) -> Option<&'static Resource> {
    list.iter().copied().find(|r| r.plural == plural)
}

/// Looks up a resource by plural in any group (for the Rust-side helpers).
pub(crate) fn by_plural(plural: &str) -> Option<&'static Resource> {
    find(CORE, plural).or_else(|| find(EVENTS_GROUP, plural)).or_else(|| find(COORDINATION_GROUP, plural))
}
