//! The JSON shapes of the file server, and their mapping to protocol types.
//!
//! Ids are JSON strings (64-bit ids do not survive JavaScript numbers);
//! numbers are accepted too, and sizes either way, so a server that is
//! lenient in what it sends is understood.

use parley_proto::pb;
use serde::{Deserialize, Deserializer};

/// A number or a string holding one.
#[derive(Deserialize)]
#[serde(untagged)]
enum Lenient {
    Int(i64),
    Uint(u64),
    Text(String),
}

impl Lenient {
    fn as_i64(&self) -> Option<i64> {
        match self {
            Lenient::Int(n) => Some(*n),
            Lenient::Uint(n) => i64::try_from(*n).ok(),
            Lenient::Text(s) => s.trim().parse().ok(),
        }
    }

    fn as_u64(&self) -> Option<u64> {
        match self {
            Lenient::Int(n) => u64::try_from(*n).ok(),
            Lenient::Uint(n) => Some(*n),
            Lenient::Text(s) => s.trim().parse().ok(),
        }
    }
}

fn invalid<E: serde::de::Error>(what: &str) -> E {
    E::custom(format!("{what} is not a valid number"))
}

/// An id given as a string (or a number).
pub(crate) fn id<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Lenient::deserialize(d)?.as_i64().ok_or_else(|| invalid("id"))
}

/// An optional id; `null` and absence are `None`.
pub(crate) fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Lenient>::deserialize(d)? {
        None => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| invalid("id")),
    }
}

/// An optional size or offset.
pub(crate) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<Lenient>::deserialize(d)? {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| invalid("size")),
    }
}

/// A stored file as the file server describes it.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct FileJson {
    #[serde(deserialize_with = "id")]
    pub(crate) file_id: i64,
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default, deserialize_with = "opt_u64")]
    pub(crate) size: Option<u64>,
    #[serde(default)]
    pub(crate) mime: String,
    #[serde(default)]
    pub(crate) sha256: String,
    #[serde(default, deserialize_with = "opt_u64")]
    pub(crate) width: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    pub(crate) height: Option<u64>,
    #[serde(default)]
    pub(crate) has_thumbnail: bool,
}

impl From<FileJson> for pb::FileRef {
    fn from(f: FileJson) -> pb::FileRef {
        let dimension = |d: Option<u64>| d.and_then(|d| u32::try_from(d).ok()).unwrap_or(0);
        pb::FileRef {
            file_id: f.file_id,
            name: f.name,
            size: f.size.unwrap_or(0),
            mime: f.mime,
            sha256: f.sha256.to_ascii_lowercase(),
            width: dimension(f.width),
            height: dimension(f.height),
            has_thumbnail: f.has_thumbnail,
        }
    }
}

/// Any answer about an upload: creating one (`upload_id`, `received`,
/// `chunk_max`, or `file` when the bytes were known already), asking where
/// it stands (`received`, `size`) or sending a chunk (`received`, and
/// `file` once complete).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct UploadState {
    #[serde(default, deserialize_with = "opt_id")]
    pub(crate) upload_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_u64")]
    pub(crate) received: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    pub(crate) chunk_max: Option<u64>,
    #[serde(default)]
    pub(crate) file: Option<FileJson>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_map_to_file_refs() {
        let json = r#"{"file_id":"9007199254740993","name":"a.png","size":"12","mime":"image/png",
            "sha256":"AB","width":640,"height":null,"has_thumbnail":true}"#;
        let file: pb::FileRef = serde_json::from_str::<FileJson>(json).unwrap().into();
        assert_eq!(file.file_id, 9_007_199_254_740_993);
        assert_eq!(file.size, 12);
        assert_eq!(file.sha256, "ab");
        assert_eq!((file.width, file.height), (640, 0));
        assert!(file.has_thumbnail);
    }

    #[test]
    fn upload_answers_of_every_kind_parse() {
        let created: UploadState =
            serde_json::from_str(r#"{"upload_id":"77","received":0,"chunk_max":1048576}"#).unwrap();
        assert_eq!(created.upload_id, Some(77));
        assert_eq!(created.chunk_max, Some(1 << 20));
        assert!(created.file.is_none());
        let known: UploadState = serde_json::from_str(r#"{"file":{"file_id":"5","size":3}}"#).unwrap();
        assert_eq!(known.file.map(|f| f.file_id), Some(5));
        assert!(serde_json::from_str::<UploadState>(r#"{"upload_id":"x"}"#).is_err());
    }
}
