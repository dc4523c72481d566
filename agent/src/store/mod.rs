//! Secret stores as the agent uses them: the trait, labels and the encrypted file store come
//! from `dsops-store`; AWS Secrets Manager is implemented here (it needs the AWS SDK).

mod aws_sm;

pub use aws_sm::{SecretsManagerOptions, SecretsManagerStore};
pub use dsops_store::{
    Fields, FileStore, FileStoreOptions, Label, SecretStore, StoreError, VersionInfo,
};
pub(crate) use dsops_store::{derive, load_or_create_key};
