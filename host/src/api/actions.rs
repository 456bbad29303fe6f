//! The action table: one row per action Keyward answers, refused ones included. Every fact the
//! front needs about an action (its handler, how it is rate-limited and audited, where it runs,
//! how access is decided) is in its row, so adding an action is one row here, one handler and
//! one service method. `index()` looks rows up; the tests below check the table against the
//! reference's action lists and against itself.

use super::{admin_actions, audit_actions, crypto_actions, data_key_actions, iam_actions};
use super::{kms_actions, pq_actions, product_actions, ssm_actions, Handler};
use std::collections::HashMap;
use std::sync::LazyLock;

/// A product served on this endpoint: its API version and credential-scope service name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Product {
    Kms,
    Ssm,
    /// Keyward's own operator and access-management actions.
    Admin,
    /// The audit log, queried like Tencent CloudAudit.
    CloudAudit,
}

impl Product {
    pub const ALL: [Product; 4] = [
        Product::Kms,
        Product::Ssm,
        Product::Admin,
        Product::CloudAudit,
    ];

    pub fn from_version(v: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.version() == v)
    }

    pub const fn version(self) -> &'static str {
        match self {
            Product::Kms => "2019-01-18",
            Product::Ssm => "2019-09-23",
            Product::Admin => "2026-11-01",
            Product::CloudAudit => "2019-03-19",
        }
    }

    /// The TC3 credential-scope service, which is also the CAM service prefix.
    pub const fn service(self) -> &'static str {
        match self {
            Product::Kms => "kms",
            Product::Ssm => "ssm",
            Product::Admin => "keyward",
            Product::CloudAudit => "cloudaudit",
        }
    }
}

/// How an action is counted by the rate limiter (and whether the audit log calls it
/// read-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Uses key material: Encrypt, Decrypt, Sign, GetSecretValue...
    Crypto,
    /// Reads metadata: Describe*, List*, Get*, LookUpEvents.
    Read,
    /// Changes state.
    Write,
}

impl Family {
    pub fn read_only(self) -> bool {
        self != Family::Write
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Crypto => "cryptographic",
            Family::Read => "read",
            Family::Write => "write",
        }
    }
}

/// Where the handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exec {
    /// On the tokio worker: reads and single HSM operations take microseconds, less than a
    /// hand-off to the blocking pool (docs/benchmarks.md). The PKCS#11 session pool is at
    /// least as large as the worker pool, so a worker never waits for a session.
    Inline,
    /// On the blocking pool: writes wait for an fsync.
    Blocking,
}

/// How access is decided for a sub-account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The handler decides on each resource it touches; one that decides on none is refused.
    Resource,
    /// Touches no particular resource: a policy grants it on resource `*`.
    Global,
    /// Lists resources: runs when a policy names it at all and shows what policies allow.
    List,
}

#[derive(Clone, Copy)]
pub enum Run {
    Handler(Handler),
    /// Not offered: answered with `UnsupportedOperation` and this reason.
    Refused(&'static str),
}

#[derive(Clone, Copy)]
pub struct Action {
    pub product: Product,
    pub name: &'static str,
    pub run: Run,
    pub family: Family,
    pub exec: Exec,
    pub scope: Scope,
}

impl Action {
    /// The name policies use (`kms:Encrypt`, `keyward:AddUser`).
    pub fn cam_name(&self) -> String {
        format!("{}:{}", self.product.service(), self.name)
    }
}

const fn row(
    product: Product,
    name: &'static str,
    run: Run,
    family: Family,
    exec: Exec,
    scope: Scope,
) -> Action {
    Action {
        product,
        name,
        run,
        family,
        exec,
        scope,
    }
}

const WHITE_BOX: &str = "white-box keys are not offered: their key tables are a proprietary \
    format of Tencent's device SDK that an on-premises HSM cannot produce";

use Exec::{Blocking, Inline};
use Family::{Crypto, Read, Write};
use Product::{Admin, CloudAudit, Kms, Ssm};
use Scope::{Global, List, Resource};

#[rustfmt::skip]
pub const ACTIONS: &[Action] = &[
    // KMS (2019-01-18): keys, crypto, asymmetric keys, BYOK
    row(Kms, "CreateKey", Run::Handler(kms_actions::create_key), Write, Blocking, Resource),
    row(Kms, "DescribeKey", Run::Handler(kms_actions::describe_key), Read, Inline, Resource),
    row(Kms, "DescribeKeys", Run::Handler(kms_actions::describe_keys), Read, Blocking, Resource),
    row(Kms, "ListKeys", Run::Handler(kms_actions::list_keys), Read, Blocking, List),
    row(Kms, "ListKeyDetail", Run::Handler(kms_actions::list_key_detail), Read, Blocking, List),
    row(Kms, "UpdateAlias", Run::Handler(kms_actions::update_alias), Write, Blocking, Resource),
    row(Kms, "UpdateKeyDescription", Run::Handler(kms_actions::update_key_description), Write, Blocking, Resource),
    row(Kms, "EnableKey", Run::Handler(|c, b| kms_actions::set_enabled(c, b, true)), Write, Blocking, Resource),
    row(Kms, "DisableKey", Run::Handler(|c, b| kms_actions::set_enabled(c, b, false)), Write, Blocking, Resource),
    row(Kms, "EnableKeys", Run::Handler(|c, b| kms_actions::set_enabled_batch(c, b, true)), Write, Blocking, Resource),
    row(Kms, "DisableKeys", Run::Handler(|c, b| kms_actions::set_enabled_batch(c, b, false)), Write, Blocking, Resource),
    row(Kms, "Encrypt", Run::Handler(crypto_actions::encrypt), Crypto, Inline, Resource),
    row(Kms, "Decrypt", Run::Handler(crypto_actions::decrypt), Crypto, Inline, Resource),
    row(Kms, "GenerateDataKey", Run::Handler(crypto_actions::generate_data_key), Crypto, Inline, Resource),
    row(Kms, "GenerateRandom", Run::Handler(crypto_actions::generate_random), Crypto, Inline, Global),
    row(Kms, "ScheduleKeyDeletion", Run::Handler(kms_actions::schedule_key_deletion), Write, Blocking, Resource),
    row(Kms, "CancelKeyDeletion", Run::Handler(kms_actions::cancel_key_deletion), Write, Blocking, Resource),
    row(Kms, "ArchiveKey", Run::Handler(|c, b| kms_actions::archive(c, b, true)), Write, Blocking, Resource),
    row(Kms, "CancelKeyArchive", Run::Handler(|c, b| kms_actions::archive(c, b, false)), Write, Blocking, Resource),
    row(Kms, "EnableKeyRotation", Run::Handler(kms_actions::enable_key_rotation), Write, Blocking, Resource),
    row(Kms, "DisableKeyRotation", Run::Handler(kms_actions::disable_key_rotation), Write, Blocking, Resource),
    row(Kms, "GetKeyRotationStatus", Run::Handler(kms_actions::get_key_rotation_status), Read, Inline, Resource),
    row(Kms, "RotateKey", Run::Handler(kms_actions::rotate_key), Write, Blocking, Resource),
    row(Kms, "ReEncrypt", Run::Handler(crypto_actions::re_encrypt), Crypto, Inline, Resource),
    row(Kms, "BindCloudResource", Run::Handler(|c, b| kms_actions::bind_cloud_resource(c, b, true)), Write, Blocking, Resource),
    row(Kms, "UnbindCloudResource", Run::Handler(|c, b| kms_actions::bind_cloud_resource(c, b, false)), Write, Blocking, Resource),
    row(Kms, "GetPublicKey", Run::Handler(crypto_actions::get_public_key), Crypto, Inline, Resource),
    row(Kms, "SignByAsymmetricKey", Run::Handler(crypto_actions::sign_by_asymmetric_key), Crypto, Inline, Resource),
    row(Kms, "VerifyByAsymmetricKey", Run::Handler(crypto_actions::verify_by_asymmetric_key), Crypto, Inline, Resource),
    row(Kms, "AsymmetricRsaDecrypt", Run::Handler(crypto_actions::asymmetric_rsa_decrypt), Crypto, Inline, Resource),
    row(Kms, "AsymmetricSm2Decrypt", Run::Handler(crypto_actions::asymmetric_sm2_decrypt), Crypto, Inline, Resource),
    row(Kms, "GetParametersForImport", Run::Handler(crypto_actions::get_parameters_for_import), Read, Blocking, Resource),
    row(Kms, "ImportKeyMaterial", Run::Handler(crypto_actions::import_key_material), Write, Blocking, Resource),
    row(Kms, "DeleteImportedKeyMaterial", Run::Handler(crypto_actions::delete_imported_key_material), Write, Blocking, Resource),
    row(Kms, "GetServiceStatus", Run::Handler(kms_actions::get_service_status), Read, Blocking, Global),
    row(Kms, "GetRegions", Run::Handler(kms_actions::get_regions), Read, Inline, Global),
    row(Kms, "ListAlgorithms", Run::Handler(kms_actions::list_algorithms), Read, Inline, Global),
    // KMS actions Keyward does not offer: refused with the reason, not InvalidAction.
    row(Kms, "CreateWhiteBoxKey", Run::Refused(WHITE_BOX), Write, Blocking, Resource),
    row(Kms, "DeleteWhiteBoxKey", Run::Refused(WHITE_BOX), Write, Blocking, Resource),
    row(Kms, "DescribeWhiteBoxDecryptKey", Run::Refused(WHITE_BOX), Read, Blocking, Resource),
    row(Kms, "DescribeWhiteBoxDeviceFingerprints", Run::Refused(WHITE_BOX), Read, Blocking, Resource),
    row(Kms, "DescribeWhiteBoxKey", Run::Refused(WHITE_BOX), Read, Blocking, Resource),
    row(Kms, "DescribeWhiteBoxKeyDetails", Run::Refused(WHITE_BOX), Read, Blocking, Resource),
    row(Kms, "DescribeWhiteBoxServiceStatus", Run::Refused(WHITE_BOX), Read, Blocking, Resource),
    row(Kms, "DisableWhiteBoxKey", Run::Refused(WHITE_BOX), Write, Blocking, Resource),
    row(Kms, "DisableWhiteBoxKeys", Run::Refused(WHITE_BOX), Write, Blocking, Resource),
    row(Kms, "EnableWhiteBoxKey", Run::Refused(WHITE_BOX), Write, Blocking, Resource),
    row(Kms, "EnableWhiteBoxKeys", Run::Refused(WHITE_BOX), Write, Blocking, Resource),
    row(Kms, "EncryptByWhiteBox", Run::Refused(WHITE_BOX), Crypto, Blocking, Resource),
    row(Kms, "OverwriteWhiteBoxDeviceFingerprints", Run::Refused(WHITE_BOX), Write, Blocking, Resource),
    row(Kms, "PostQuantumCryptoEncrypt", Run::Handler(pq_actions::encrypt), Crypto, Blocking, Resource),
    row(Kms, "PostQuantumCryptoDecrypt", Run::Handler(pq_actions::decrypt), Crypto, Blocking, Resource),
    row(Kms, "PostQuantumCryptoSign", Run::Handler(pq_actions::sign), Crypto, Blocking, Resource),
    row(Kms, "PostQuantumCryptoVerify", Run::Handler(pq_actions::verify), Crypto, Blocking, Resource),
    // KMS: hosted data keys
    row(Kms, "ImportDataKey", Run::Handler(data_key_actions::import_data_key), Write, Blocking, Resource),
    row(Kms, "DescribeDataKey", Run::Handler(data_key_actions::describe_data_key), Read, Inline, Resource),
    row(Kms, "DescribeDataKeys", Run::Handler(data_key_actions::describe_data_keys), Read, Blocking, Resource),
    row(Kms, "ListDataKeys", Run::Handler(data_key_actions::list_data_keys), Read, Blocking, List),
    row(Kms, "ListDataKeyDetail", Run::Handler(data_key_actions::list_data_key_detail), Read, Blocking, List),
    row(Kms, "GetDataKeyPlaintext", Run::Handler(data_key_actions::get_data_key_plaintext), Crypto, Inline, Resource),
    row(Kms, "GetDataKeyCiphertextBlob", Run::Handler(data_key_actions::get_data_key_ciphertext_blob), Crypto, Inline, Resource),
    row(Kms, "UpdateDataKeyName", Run::Handler(data_key_actions::update_data_key_name), Write, Blocking, Resource),
    row(Kms, "UpdateDataKeyDescription", Run::Handler(data_key_actions::update_data_key_description), Write, Blocking, Resource),
    row(Kms, "EnableDataKey", Run::Handler(|c, b| data_key_actions::set_enabled(c, b, true)), Write, Blocking, Resource),
    row(Kms, "DisableDataKey", Run::Handler(|c, b| data_key_actions::set_enabled(c, b, false)), Write, Blocking, Resource),
    row(Kms, "EnableDataKeys", Run::Handler(|c, b| data_key_actions::set_enabled_batch(c, b, true)), Write, Blocking, Resource),
    row(Kms, "DisableDataKeys", Run::Handler(|c, b| data_key_actions::set_enabled_batch(c, b, false)), Write, Blocking, Resource),
    row(Kms, "ScheduleDataKeyDeletion", Run::Handler(data_key_actions::schedule_deletion), Write, Blocking, Resource),
    row(Kms, "CancelDataKeyDeletion", Run::Handler(data_key_actions::cancel_deletion), Write, Blocking, Resource),
    // Secrets Manager (2019-09-23)
    row(Ssm, "CreateSecret", Run::Handler(ssm_actions::create_secret), Write, Blocking, Resource),
    row(Ssm, "GetSecretValue", Run::Handler(ssm_actions::get_secret_value), Crypto, Inline, Resource),
    row(Ssm, "PutSecretValue", Run::Handler(|c, b| ssm_actions::put_secret_value(c, b, false)), Write, Blocking, Resource),
    row(Ssm, "UpdateSecret", Run::Handler(|c, b| ssm_actions::put_secret_value(c, b, true)), Write, Blocking, Resource),
    row(Ssm, "UpdateDescription", Run::Handler(ssm_actions::update_description), Write, Blocking, Resource),
    row(Ssm, "DescribeSecret", Run::Handler(ssm_actions::describe_secret), Read, Inline, Resource),
    row(Ssm, "ListSecrets", Run::Handler(ssm_actions::list_secrets), Read, Blocking, List),
    row(Ssm, "ListSecretVersionIds", Run::Handler(ssm_actions::list_secret_version_ids), Read, Inline, Resource),
    row(Ssm, "DeleteSecretVersion", Run::Handler(ssm_actions::delete_secret_version), Write, Blocking, Resource),
    row(Ssm, "EnableSecret", Run::Handler(|c, b| ssm_actions::set_enabled(c, b, true)), Write, Blocking, Resource),
    row(Ssm, "DisableSecret", Run::Handler(|c, b| ssm_actions::set_enabled(c, b, false)), Write, Blocking, Resource),
    row(Ssm, "DeleteSecret", Run::Handler(ssm_actions::delete_secret), Write, Blocking, Resource),
    row(Ssm, "RestoreSecret", Run::Handler(ssm_actions::restore_secret), Write, Blocking, Resource),
    row(Ssm, "GetServiceStatus", Run::Handler(ssm_actions::get_service_status), Read, Blocking, Global),
    row(Ssm, "GetRegions", Run::Handler(ssm_actions::get_regions), Read, Inline, Global),
    row(Ssm, "CreateService", Run::Handler(ssm_actions::create_service), Write, Blocking, Global),
    row(Ssm, "CreateProductSecret", Run::Handler(product_actions::create_product_secret), Write, Blocking, Resource),
    row(Ssm, "RotateProductSecret", Run::Handler(product_actions::rotate_product_secret), Write, Blocking, Resource),
    row(Ssm, "UpdateRotationStatus", Run::Handler(product_actions::update_rotation_status), Write, Blocking, Resource),
    row(Ssm, "DescribeRotationDetail", Run::Handler(product_actions::describe_rotation_detail), Read, Blocking, Resource),
    row(Ssm, "DescribeRotationHistory", Run::Handler(product_actions::describe_rotation_history), Read, Blocking, Resource),
    row(Ssm, "DescribeAsyncRequestInfo", Run::Handler(product_actions::describe_async_request_info), Read, Blocking, Resource),
    row(Ssm, "DescribeSupportedProducts", Run::Handler(product_actions::describe_supported_products), Read, Blocking, Global),
    row(Ssm, "CreateSSHKeyPairSecret", Run::Handler(ssm_actions::create_ssh_key_pair_secret), Write, Blocking, Resource),
    row(Ssm, "GetSSHKeyPairValue", Run::Handler(ssm_actions::get_ssh_key_pair_value), Crypto, Blocking, Resource),
    // Keyward extensions (2026-11-01): operator actions
    row(Admin, "AdvanceClock", Run::Handler(admin_actions::advance_clock), Write, Blocking, Global),
    row(Admin, "RunScheduledJobs", Run::Handler(admin_actions::run_scheduled_jobs), Write, Blocking, Global),
    // Keyward extensions: access management and the audit log
    row(Admin, "AddUser", Run::Handler(iam_actions::add_user), Write, Blocking, Resource),
    row(Admin, "GetUser", Run::Handler(iam_actions::get_user), Read, Blocking, Resource),
    row(Admin, "ListUsers", Run::Handler(iam_actions::list_users), Read, Blocking, Global),
    row(Admin, "UpdateUser", Run::Handler(iam_actions::update_user), Write, Blocking, Resource),
    row(Admin, "DeleteUser", Run::Handler(iam_actions::delete_user), Write, Blocking, Resource),
    row(Admin, "CreateAccessKey", Run::Handler(iam_actions::create_access_key), Write, Blocking, Resource),
    row(Admin, "UpdateAccessKey", Run::Handler(iam_actions::update_access_key), Write, Blocking, Resource),
    row(Admin, "DeleteAccessKey", Run::Handler(iam_actions::delete_access_key), Write, Blocking, Resource),
    row(Admin, "ListAccessKeys", Run::Handler(iam_actions::list_access_keys), Read, Blocking, Resource),
    row(Admin, "CreateGroup", Run::Handler(iam_actions::create_group), Write, Blocking, Resource),
    row(Admin, "DeleteGroup", Run::Handler(iam_actions::delete_group), Write, Blocking, Resource),
    row(Admin, "ListGroups", Run::Handler(iam_actions::list_groups), Read, Blocking, Global),
    row(Admin, "AddUserToGroup", Run::Handler(|c, b| iam_actions::group_membership(c, b, true)), Write, Blocking, Resource),
    row(Admin, "RemoveUserFromGroup", Run::Handler(|c, b| iam_actions::group_membership(c, b, false)), Write, Blocking, Resource),
    row(Admin, "ListUsersForGroup", Run::Handler(iam_actions::list_users_for_group), Read, Blocking, Resource),
    row(Admin, "CreatePolicy", Run::Handler(iam_actions::create_policy), Write, Blocking, Resource),
    row(Admin, "UpdatePolicy", Run::Handler(iam_actions::update_policy), Write, Blocking, Resource),
    row(Admin, "DeletePolicy", Run::Handler(iam_actions::delete_policy), Write, Blocking, Resource),
    row(Admin, "GetPolicy", Run::Handler(iam_actions::get_policy), Read, Blocking, Resource),
    row(Admin, "ListPolicies", Run::Handler(iam_actions::list_policies), Read, Blocking, Global),
    row(Admin, "AttachUserPolicy", Run::Handler(|c, b| iam_actions::attach(c, b, true, true)), Write, Blocking, Resource),
    row(Admin, "DetachUserPolicy", Run::Handler(|c, b| iam_actions::attach(c, b, true, false)), Write, Blocking, Resource),
    row(Admin, "AttachGroupPolicy", Run::Handler(|c, b| iam_actions::attach(c, b, false, true)), Write, Blocking, Resource),
    row(Admin, "DetachGroupPolicy", Run::Handler(|c, b| iam_actions::attach(c, b, false, false)), Write, Blocking, Resource),
    row(Admin, "ListAttachedUserPolicies", Run::Handler(|c, b| iam_actions::list_attached(c, b, true)), Read, Blocking, Resource),
    row(Admin, "ListAttachedGroupPolicies", Run::Handler(|c, b| iam_actions::list_attached(c, b, false)), Read, Blocking, Resource),
    row(Admin, "VerifyAuditLog", Run::Handler(audit_actions::verify_audit_log), Read, Blocking, Global),
    row(Admin, "ExportAuditLog", Run::Handler(audit_actions::export_audit_log), Read, Blocking, Global),
    row(Admin, "DescribeAuditKey", Run::Handler(audit_actions::describe_audit_key), Read, Blocking, Global),
    row(Admin, "ArchiveAuditLog", Run::Handler(admin_actions::archive_audit_log), Write, Blocking, Global),
    row(Admin, "DescribeDeployment", Run::Handler(admin_actions::describe_deployment), Read, Blocking, Global),
    // CloudAudit (2019-03-19)
    row(CloudAudit, "LookUpEvents", Run::Handler(audit_actions::look_up_events), Read, Blocking, Global),
];

/// A row and its position in the table.
type Indexed = (u32, &'static Action);

/// Each row by product and name, with its position in the table.
static INDEX: LazyLock<HashMap<(Product, &'static str), Indexed>> = LazyLock::new(|| {
    (0u32..)
        .zip(ACTIONS)
        .map(|(i, a)| ((a.product, a.name), (i, a)))
        .collect()
});

/// The row of `name` in `product`, if Keyward knows the action.
pub fn find(product: Product, name: &str) -> Option<&'static Action> {
    INDEX.get(&(product, name)).map(|&(_, a)| a)
}

/// A row's position in the table: a compact name for it (the signature memory keeps it).
pub fn position(row: &Action) -> Option<u32> {
    INDEX.get(&(row.product, row.name)).map(|&(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn names(product: Product) -> BTreeSet<&'static str> {
        ACTIONS
            .iter()
            .filter(|a| a.product == product)
            .map(|a| a.name)
            .collect()
    }

    fn reference(file: &str) -> BTreeSet<String> {
        let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn every_reference_action_has_exactly_one_row() {
        for (product, file, count) in [
            (Product::Kms, "kms-actions.txt", 69),
            (Product::Ssm, "ssm-actions.txt", 25),
        ] {
            let want = reference(file);
            let have: BTreeSet<String> = names(product).into_iter().map(String::from).collect();
            assert_eq!(have, want, "{product:?} rows differ from {file}");
            assert_eq!(have.len(), count);
        }
        assert_eq!(names(Product::CloudAudit), BTreeSet::from(["LookUpEvents"]));
        let mut seen = BTreeSet::new();
        for a in ACTIONS {
            assert!(
                seen.insert((a.product.service(), a.name)),
                "duplicate row {}",
                a.name
            );
            assert_eq!(find(a.product, a.name).map(|r| r.name), Some(a.name));
        }
    }

    #[test]
    fn rows_agree_with_each_other() {
        for a in ACTIONS {
            let n = a.name;
            match a.run {
                Run::Refused(reason) => {
                    assert!(!reason.is_empty());
                    assert_eq!(a.exec, Exec::Blocking, "{n}: nothing to run inline");
                }
                Run::Handler(_) => {}
            }
            if a.exec == Exec::Inline {
                assert_ne!(a.family, Family::Write, "{n}: writes wait for an fsync");
            }
            if a.scope == Scope::List {
                assert!(
                    n.starts_with("List"),
                    "{n}: only List* actions filter per item"
                );
                assert_eq!(a.family, Family::Read, "{n}");
            }
            if a.family == Family::Write {
                let reads = ["Describe", "List", "Get", "LookUp"];
                assert!(
                    !reads.iter().any(|p| n.starts_with(p)),
                    "{n}: a read counted as a write"
                );
            }
            // Of the extension actions, access management decides per user, group and
            // policy (cam::Cam); the operator and audit actions and the plain listings of
            // users, groups and policies name no resource.
            if matches!(a.product, Product::Admin | Product::CloudAudit) {
                let global = a.product == Product::CloudAudit
                    || n.contains("Audit")
                    || [
                        "AdvanceClock",
                        "RunScheduledJobs",
                        "DescribeDeployment",
                        "ListUsers",
                        "ListGroups",
                        "ListPolicies",
                    ]
                    .contains(&n);
                let want = if global {
                    Scope::Global
                } else {
                    Scope::Resource
                };
                assert_eq!(a.scope, want, "{n}");
            }
        }
    }

    #[test]
    fn versions_and_services_round_trip() {
        for p in Product::ALL {
            assert_eq!(Product::from_version(p.version()), Some(p));
        }
        assert_eq!(
            find(Product::Kms, "Encrypt").unwrap().cam_name(),
            "kms:Encrypt"
        );
        assert!(find(Product::Kms, "LookUpEvents").is_none());
    }
}
