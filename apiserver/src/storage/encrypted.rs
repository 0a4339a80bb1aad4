//! Encryption at rest: a [`Store`] wrapper that encrypts the values of chosen resources (Secrets)
//! with AES-GCM before they reach the backend, configured by a Kubernetes
//! `apiserver.config.k8s.io/v1` `EncryptionConfiguration` file.
//!
//! As in Kubernetes: the first provider of a resource encrypts (or, `identity`, writes plain
//! text); every provider decrypts; an encrypted value is `k8s:enc:aesgcm:v1:KEYNAME:` followed
//! by the 12-byte random nonce and the sealed data, with the storage key as additional data.
//! A value written with an older key reads fine and is rewritten with the first key by any
//! update (even one that changes nothing: [`Store::stale`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm};
use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;

use super::{KeyValue, ListResult, Revision, StorageError, Store, WatchEvent, WatchStream};

type Aes192Gcm = AesGcm<aes_gcm::aes::Aes192, U12>;

const PREFIX: &str = "k8s:enc:aesgcm:v1:";

/// Why an encryption configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid EncryptionConfiguration.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with the field.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileConfig {
    api_version: String,
    kind: String,
    #[serde(default)]
    resources: Vec<FileResources>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileResources {
    resources: Vec<String>,
    providers: Vec<FileProvider>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProvider {
    aesgcm: Option<FileKeys>,
    identity: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKeys {
    keys: Vec<FileKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    name: String,
    secret: String,
}

/// One AES-GCM key (the key schedules differ in size; a handful of keys per server).
#[derive(Clone)]
#[allow(clippy::large_enum_variant)]
enum Cipher {
    A128(Aes128Gcm),
    A192(Aes192Gcm),
    A256(Aes256Gcm),
}

impl Cipher {
    fn new(secret: &[u8]) -> Option<Cipher> {
        match secret.len() {
            16 => Aes128Gcm::new_from_slice(secret).ok().map(Cipher::A128),
            24 => Aes192Gcm::new_from_slice(secret).ok().map(Cipher::A192),
            32 => Aes256Gcm::new_from_slice(secret).ok().map(Cipher::A256),
            _ => None,
        }
    }

    fn seal(&self, nonce: &[u8], msg: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let nonce = aes_gcm::Nonce::<U12>::from_slice(nonce);
        let payload = Payload { msg, aad };
        match self {
            Cipher::A128(c) => c.encrypt(nonce, payload).ok(),
            Cipher::A192(c) => c.encrypt(nonce, payload).ok(),
            Cipher::A256(c) => c.encrypt(nonce, payload).ok(),
        }
    }

    fn open(&self, nonce: &[u8], msg: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let nonce = aes_gcm::Nonce::<U12>::from_slice(nonce);
        let payload = Payload { msg, aad };
        match self {
            Cipher::A128(c) => c.decrypt(nonce, payload).ok(),
            Cipher::A192(c) => c.decrypt(nonce, payload).ok(),
            Cipher::A256(c) => c.decrypt(nonce, payload).ok(),
        }
    }
}

/// A provider of one resource, in the file's order.
#[derive(Clone)]
enum Provider {
    AesGcm(Vec<(String, Cipher)>),
    Identity,
}

/// The providers of each storage key prefix (`/registry/core/secrets/`).
#[derive(Clone, Default)]
pub struct EncryptionConfig {
    rules: Vec<(String, Vec<Provider>)>,
}

impl EncryptionConfig {
    /// Reads an `EncryptionConfiguration` file (YAML or JSON).
    pub fn load(path: &Path) -> Result<Self, EncryptionError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| EncryptionError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|message| EncryptionError::Invalid { path: p, message })
    }

    /// Parses the text of an `EncryptionConfiguration`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: FileConfig = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        if file.api_version != "apiserver.config.k8s.io/v1"
            || file.kind != "EncryptionConfiguration"
        {
            return Err(format!(
                "expected apiVersion apiserver.config.k8s.io/v1 and kind EncryptionConfiguration, got {} {}",
                file.api_version, file.kind
            ));
        }
        let mut rules = Vec::new();
        for (i, r) in file.resources.iter().enumerate() {
            let mut providers = Vec::new();
            for (j, p) in r.providers.iter().enumerate() {
                let field = format!("resources[{i}].providers[{j}]");
                match (&p.aesgcm, &p.identity) {
                    (Some(keys), None) => {
                        if keys.keys.is_empty() {
                            return Err(format!("{field}.aesgcm.keys: Required value"));
                        }
                        let mut list = Vec::new();
                        for (k, key) in keys.keys.iter().enumerate() {
                            let kf = format!("{field}.aesgcm.keys[{k}]");
                            if key.name.is_empty() || key.name.contains(':') {
                                return Err(format!(
                                    "{kf}.name: a key name is required and may not contain ':'"
                                ));
                            }
                            let secret = base64::engine::general_purpose::STANDARD
                                .decode(key.secret.trim())
                                .map_err(|e| format!("{kf}.secret: not base64: {e}"))?;
                            let cipher = Cipher::new(&secret).ok_or_else(|| {
                                format!(
                                    "{kf}.secret: an AES-GCM key is 16, 24 or 32 bytes, got {}",
                                    secret.len()
                                )
                            })?;
                            list.push((key.name.clone(), cipher));
                        }
                        providers.push(Provider::AesGcm(list));
                    }
                    (None, Some(_)) => providers.push(Provider::Identity),
                    _ => {
                        return Err(format!(
                            "{field}: exactly one of aesgcm and identity is supported"
                        ));
                    }
                }
            }
            if providers.is_empty() {
                return Err(format!("resources[{i}].providers: Required value"));
            }
            for resource in &r.resources {
                let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
                let group = if group.is_empty() { "core" } else { group };
                rules.push((format!("/registry/{group}/{plural}/"), providers.clone()));
            }
        }
        Ok(EncryptionConfig { rules })
    }

    fn providers(&self, key: &str) -> Option<&[Provider]> {
        self.rules
            .iter()
            .find(|(prefix, _)| key.starts_with(prefix.as_str()))
            .map(|(_, p)| p.as_slice())
    }

    /// The value to store for `key`.
    fn encrypt(&self, key: &str, value: Bytes) -> Result<Bytes, StorageError> {
        match self.providers(key).and_then(|p| p.first()) {
            Some(Provider::AesGcm(keys)) => {
                let (name, cipher) = &keys[0];
                let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
                let sealed = cipher
                    .seal(&nonce, &value, key.as_bytes())
                    .ok_or_else(|| StorageError::Internal("encryption failed".into()))?;
                let mut out = Vec::with_capacity(PREFIX.len() + name.len() + 13 + sealed.len());
                out.extend_from_slice(PREFIX.as_bytes());
                out.extend_from_slice(name.as_bytes());
                out.push(b':');
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&sealed);
                Ok(Bytes::from(out))
            }
            _ => Ok(value),
        }
    }

    /// The plain value of a stored `value`, and whether it was written otherwise than the first
    /// provider would write it now.
    fn decrypt(&self, key: &str, value: Bytes) -> Result<(Bytes, bool), StorageError> {
        let Some(providers) = self.providers(key) else {
            return Ok((value, false));
        };
        let Some(rest) = value.strip_prefix(PREFIX.as_bytes()) else {
            if providers.iter().any(|p| matches!(p, Provider::Identity)) {
                let stale = !matches!(providers.first(), Some(Provider::Identity));
                return Ok((value, stale));
            }
            return Err(StorageError::Internal(format!(
                "{key} is stored unencrypted and no identity provider is configured"
            )));
        };
        let colon = rest
            .iter()
            .position(|b| *b == b':')
            .ok_or_else(|| StorageError::Internal(format!("{key}: malformed encrypted value")))?;
        let name = String::from_utf8_lossy(&rest[..colon]).into_owned();
        let data = &rest[colon + 1..];
        if data.len() < 12 {
            return Err(StorageError::Internal(format!(
                "{key}: malformed encrypted value"
            )));
        }
        for (i, p) in providers.iter().enumerate() {
            let Provider::AesGcm(keys) = p else { continue };
            for (k, (n, cipher)) in keys.iter().enumerate() {
                if *n != name {
                    continue;
                }
                if let Some(plain) = cipher.open(&data[..12], &data[12..], key.as_bytes()) {
                    return Ok((Bytes::from(plain), i != 0 || k != 0));
                }
            }
        }
        Err(StorageError::Internal(format!(
            "{key}: no configured key named {name:?} decrypts it"
        )))
    }

    fn open_kv(&self, mut kv: KeyValue) -> Result<KeyValue, StorageError> {
        kv.value = self.decrypt(&kv.key, kv.value)?.0;
        Ok(kv)
    }
}

/// A store whose configured resources are encrypted at rest.
pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    config: Arc<EncryptionConfig>,
}

impl EncryptedStore {
    /// Wraps a backend.
    pub fn new(inner: Arc<dyn Store>, config: EncryptionConfig) -> Self {
        EncryptedStore {
            inner,
            config: Arc::new(config),
        }
    }
}

#[async_trait]
impl Store for EncryptedStore {
    async fn get(&self, key: &str) -> Result<(Revision, Option<KeyValue>), StorageError> {
        let (rev, kv) = self.inner.get(key).await?;
        Ok((rev, kv.map(|kv| self.config.open_kv(kv)).transpose()?))
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult, StorageError> {
        let mut r = self.inner.list(prefix, start_after, limit).await?;
        r.kvs = r
            .kvs
            .into_iter()
            .map(|kv| self.config.open_kv(kv))
            .collect::<Result<_, _>>()?;
        Ok(r)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StorageError> {
        let mut kv = self
            .inner
            .create(key, self.config.encrypt(key, value.clone())?)
            .await?;
        kv.value = value;
        Ok(kv)
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<KeyValue, StorageError> {
        let sealed = self.config.encrypt(key, value.clone())?;
        let mut kv = self.inner.update(key, sealed, expected).await?;
        kv.value = value;
        Ok(kv)
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(Revision, KeyValue), StorageError> {
        let (rev, kv) = self.inner.delete(key, expected).await?;
        Ok((rev, self.config.open_kv(kv)?))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StorageError> {
        let config = self.config.clone();
        let stream = self.inner.watch(prefix, after).await?;
        Ok(stream
            .map(move |event| match event? {
                WatchEvent::Put { kv, prev } => Ok(WatchEvent::Put {
                    kv: config.open_kv(kv)?,
                    prev: prev.map(|p| config.open_kv(p)).transpose()?,
                }),
                WatchEvent::Delete { revision, prev } => Ok(WatchEvent::Delete {
                    revision,
                    prev: config.open_kv(prev)?,
                }),
                progress => Ok(progress),
            })
            .boxed())
    }

    async fn current_revision(&self) -> Result<Revision, StorageError> {
        self.inner.current_revision().await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StorageError> {
        self.inner.compact(revision).await
    }

    async fn stale(&self, key: &str) -> Result<bool, StorageError> {
        if self.config.providers(key).is_none() {
            return Ok(false);
        }
        let (_, kv) = self.inner.get(key).await?;
        match kv {
            None => Ok(false),
            Some(kv) => Ok(self.config.decrypt(key, kv.value)?.1),
        }
    }
}

/// The key names of the providers, for logs: `secrets: aesgcm(key2, key1), identity`.
pub fn describe(config: &EncryptionConfig) -> String {
    let mut by_prefix: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (prefix, providers) in &config.rules {
        by_prefix.insert(
            prefix,
            providers
                .iter()
                .map(|p| match p {
                    Provider::Identity => "identity".to_string(),
                    Provider::AesGcm(keys) => format!(
                        "aesgcm({})",
                        keys.iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })
                .collect(),
        );
    }
    by_prefix
        .iter()
        .map(|(p, list)| format!("{p}: {}", list.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(keys: &[(&str, &str)], identity_first: bool) -> EncryptionConfig {
        let keys: Vec<String> = keys
            .iter()
            .map(|(n, s)| {
                format!(
                    "        - name: {n}\n          secret: {}\n",
                    base64::engine::general_purpose::STANDARD.encode(s)
                )
            })
            .collect();
        let aes = format!("    - aesgcm:\n        keys:\n{}", keys.concat());
        let identity = "    - identity: {}\n";
        let providers = if identity_first {
            format!("{identity}{aes}")
        } else {
            format!("{aes}{identity}")
        };
        EncryptionConfig::parse(&format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n{providers}"
        ))
        .expect("a valid configuration")
    }

    const K1: &str = "0123456789abcdef0123456789abcdef";
    const K2: &str = "fedcba9876543210";

    #[test]
    fn secrets_are_sealed_with_the_first_key_and_opened_with_any() {
        let key = "/registry/core/secrets/default/s";
        let one = config(&[("key1", K1)], false);
        let sealed = one
            .encrypt(key, Bytes::from_static(b"{\"data\":1}"))
            .unwrap();
        assert!(sealed.starts_with(b"k8s:enc:aesgcm:v1:key1:"));
        assert!(!sealed.windows(6).any(|w| w == b"\"data\""));
        assert_eq!(
            one.decrypt(key, sealed.clone()).unwrap(),
            (Bytes::from_static(b"{\"data\":1}"), false)
        );
        // Another key is the data of another object: refused.
        assert!(
            one.decrypt("/registry/core/secrets/default/t", sealed.clone())
                .is_err()
        );
        // Rotation: a new first key still opens the old value, which is then stale.
        let two = config(&[("key2", K2), ("key1", K1)], false);
        assert!(two.decrypt(key, sealed.clone()).unwrap().1);
        assert!(
            two.encrypt(key, Bytes::from_static(b"x"))
                .unwrap()
                .starts_with(b"k8s:enc:aesgcm:v1:key2:")
        );
        // Plain text is read through identity; other resources are untouched.
        assert!(two.decrypt(key, Bytes::from_static(b"{}")).unwrap().1);
        assert_eq!(
            two.encrypt(
                "/registry/core/configmaps/default/c",
                Bytes::from_static(b"{}")
            )
            .unwrap(),
            Bytes::from_static(b"{}")
        );
        let plain_first = config(&[("key1", K1)], true);
        assert_eq!(
            plain_first.encrypt(key, Bytes::from_static(b"{}")).unwrap(),
            Bytes::from_static(b"{}")
        );
        assert!(plain_first.decrypt(key, sealed).unwrap().1);
    }

    #[test]
    fn bad_configurations_name_the_field() {
        let bad_len = EncryptionConfig::parse(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm: {keys: [{name: k, secret: c2hvcnQ=}]}\n",
        );
        assert_eq!(
            bad_len.err().unwrap(),
            "resources[0].providers[0].aesgcm.keys[0].secret: an AES-GCM key is 16, 24 or 32 bytes, got 5"
        );
        assert!(EncryptionConfig::parse("apiVersion: v1\nkind: Foo\n").is_err());
    }
}
