//! Typed UUIDs, one kind per resource, so a host id can never be passed as an instance id.
//! Ids are generated on the server; the browser only parses and prints them.
//! Keep the list alphabetical and append-only.

use newtype_uuid::{TypedUuid, TypedUuidKind, TypedUuidTag};

macro_rules! typed_uuid_kinds {
    ($($kind:ident => $alias:ident, $tag:literal;)*) => {$(
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $kind {}
        impl TypedUuidKind for $kind {
            fn tag() -> TypedUuidTag {
                const TAG: TypedUuidTag = TypedUuidTag::new($tag);
                TAG
            }
        }
        pub type $alias = TypedUuid<$kind>;
    )*};
}

typed_uuid_kinds! {
    ApiTokenKind => ApiTokenUuid, "api_token";
    DpuKind => DpuUuid, "dpu";
    GpuKind => GpuUuid, "gpu";
    HostKind => HostUuid, "host";
    ImageKind => ImageUuid, "image";
    InstanceKind => InstanceUuid, "instance";
    PortKind => PortUuid, "port";
    PublicIpKind => PublicIpUuid, "public_ip";
    PublicIpPoolKind => PublicIpPoolUuid, "public_ip_pool";
    SecurityGroupKind => SecurityGroupUuid, "security_group";
    SecurityRuleKind => SecurityRuleUuid, "security_rule";
    SshKeyKind => SshKeyUuid, "ssh_key";
    SubnetKind => SubnetUuid, "subnet";
    SwitchKind => SwitchUuid, "switch";
    TenantKind => TenantUuid, "tenant";
    UserKind => UserUuid, "user";
    VpcKind => VpcUuid, "vpc";
}

pub use newtype_uuid::GenericUuid;
