/// The four document kinds of a catalog, each in its own folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DocKind {
    /// `service-types/`
    ServiceType,
    /// `service-instances/`
    ServiceInstance,
    /// `rotation-policies/`
    RotationPolicy,
    /// `principals/`
    Principal,
}

impl DocKind {
    /// Every kind.
    pub const ALL: [DocKind; 4] = [
        DocKind::ServiceType,
        DocKind::ServiceInstance,
        DocKind::RotationPolicy,
        DocKind::Principal,
    ];

    /// The folder documents of this kind live in.
    pub fn folder(self) -> &'static str {
        match self {
            DocKind::ServiceType => "service-types",
            DocKind::ServiceInstance => "service-instances",
            DocKind::RotationPolicy => "rotation-policies",
            DocKind::Principal => "principals",
        }
    }

    /// The `kind:` value.
    pub fn name(self) -> &'static str {
        match self {
            DocKind::ServiceType => "ServiceType",
            DocKind::ServiceInstance => "ServiceInstance",
            DocKind::RotationPolicy => "RotationPolicy",
            DocKind::Principal => "Principal",
        }
    }

    /// The JSON Schema file for this kind in `schemas/`.
    pub fn schema_file(self) -> &'static str {
        match self {
            DocKind::ServiceType => "service-type.schema.json",
            DocKind::ServiceInstance => "service-instance.schema.json",
            DocKind::RotationPolicy => "rotation-policy.schema.json",
            DocKind::Principal => "principal.schema.json",
        }
    }

    /// The kind whose folder this is.
    pub fn from_folder(folder: &str) -> Option<DocKind> {
        DocKind::ALL.into_iter().find(|k| k.folder() == folder)
    }

    /// The kind with this `kind:` value.
    pub fn from_name(name: &str) -> Option<DocKind> {
        DocKind::ALL.into_iter().find(|k| k.name() == name)
    }
}
