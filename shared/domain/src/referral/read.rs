//! The tolerant reader in one pass over the JSON text: strings are borrowed where they have no
//! escapes, whatever Hunter does not read is skipped ([`IgnoredAny`]), no `Value` is built.
//! A value of the wrong type reads as absent; a repeated key counts as its last occurrence
//! (as a parsed `Value` would keep it).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use super::{Contact, ProfileId};

/// Implements the scalar visits of a visitor whose value for any scalar is its default.
macro_rules! scalars_are_default {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Self::Value::default())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Self::Value::default())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Self::Value::default())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Self::Value::default())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Self::Value::default())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Self::Value::default())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Self::Value::default())
        }
    };
}

/// Reads and drops every remaining entry of an object.
fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Reads and drops every remaining element of an array.
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// A key or string, borrowed from the text unless it holds escapes.
pub(super) struct Text<'de>(pub Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// A JSON value as far as a leaf field cares: a string, a number, a boolean, or anything else
/// (null, an object, an array: skipped).
#[derive(Debug, Default)]
pub(super) enum Leaf<'de> {
    Str(Cow<'de, str>),
    Num(Number),
    Bool(bool),
    #[default]
    Other,
}

impl<'de> Deserialize<'de> for Leaf<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LeafVisitor;
        impl<'de> Visitor<'de> for LeafVisitor {
            type Value = Leaf<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Leaf<'de>, E> {
                Ok(Leaf::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Leaf<'de>, E> {
                Ok(Leaf::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Leaf<'de>, E> {
                Ok(Leaf::Str(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Leaf<'de>, E> {
                Ok(Leaf::Num(v.into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Leaf<'de>, E> {
                Ok(Leaf::Num(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Leaf<'de>, E> {
                Ok(Number::from_f64(v).map_or(Leaf::Other, Leaf::Num))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Leaf<'de>, E> {
                Ok(Leaf::Bool(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Leaf<'de>, E> {
                Ok(Leaf::Other)
            }
            fn visit_none<E: de::Error>(self) -> Result<Leaf<'de>, E> {
                Ok(Leaf::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Leaf<'de>, A::Error> {
                skip_map(map)?;
                Ok(Leaf::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Leaf<'de>, A::Error> {
                skip_seq(seq)?;
                Ok(Leaf::Other)
            }
        }
        deserializer.deserialize_any(LeafVisitor)
    }
}

impl Leaf<'_> {
    /// A non-blank string (verbatim) or a number as text.
    pub(super) fn text(self) -> Option<String> {
        match self {
            Leaf::Str(s) if !s.trim().is_empty() => Some(s.into_owned()),
            Leaf::Num(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// A finite number, or a string holding one.
    fn number(self) -> Option<f64> {
        let n = match self {
            Leaf::Num(n) => n.as_f64()?,
            Leaf::Str(s) => s.trim().parse::<f64>().ok()?,
            _ => return None,
        };
        n.is_finite().then_some(n)
    }

    /// RFC 3339 with any number of fractional digits; a zone-less time is taken as UTC.
    fn timestamp(self) -> Option<DateTime<Utc>> {
        match self {
            Leaf::Str(s) => super::parse_timestamp(&s),
            _ => None,
        }
    }

    fn boolean(self) -> Option<bool> {
        match self {
            Leaf::Bool(b) => Some(b),
            _ => None,
        }
    }
}

/// An object read by [`FromMap`], or `None` for any other JSON value (skipped).
pub(super) struct Object<T>(pub Option<T>);

impl<T> Default for Object<T> {
    fn default() -> Self {
        Self(None)
    }
}

/// What reads an object's entries.
pub(super) trait FromMap<'de>: Sized {
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

impl<'de, T: FromMap<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: FromMap<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            scalars_are_default!();
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object<T>, A::Error> {
                T::from_map(map).map(|t| Object(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Object<T>, A::Error> {
                skip_seq(seq)?;
                Ok(Object(None))
            }
        }
        deserializer.deserialize_any(ObjectVisitor(PhantomData))
    }
}

/// An array's elements, or none for any other JSON value (skipped).
struct Array<T>(Vec<T>);

impl<T> Default for Array<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArrayVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ArrayVisitor<T> {
            type Value = Array<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            scalars_are_default!();
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Array<T>, A::Error> {
                skip_map(map)?;
                Ok(Array(Vec::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Array<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Array(items))
            }
        }
        deserializer.deserialize_any(ArrayVisitor(PhantomData))
    }
}

/// The strings of a field that may name a website: the string itself, or the strings of an
/// array (blank ones too: extraction refuses them).
#[derive(Default)]
struct Strings(Vec<String>);

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StringsVisitor;
        impl<'de> Visitor<'de> for StringsVisitor {
            type Value = Strings;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Strings, E> {
                Ok(Strings::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Strings, E> {
                Ok(Strings::default())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Strings, E> {
                Ok(Strings::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Strings, E> {
                Ok(Strings::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Strings, E> {
                Ok(Strings::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Strings, E> {
                Ok(Strings::default())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Strings, E> {
                Ok(Strings(vec![v.to_owned()]))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Strings, A::Error> {
                skip_map(map)?;
                Ok(Strings::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strings, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<Leaf>()? {
                    if let Leaf::Str(s) = item {
                        out.push(s.into_owned());
                    }
                }
                Ok(Strings(out))
            }
        }
        deserializer.deserialize_any(StringsVisitor)
    }
}

/// Sets `slot` to the value of the current entry (a repeated key: the last one counts).
fn next<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
) -> Result<(), A::Error> {
    *slot = Some(map.next_value()?);
    Ok(())
}

/// The fields Hunter reads from a referral object.
#[derive(Default)]
pub(super) struct Fields<'de> {
    pub id: Option<Leaf<'de>>,
    pub engagement_id: Option<String>,
    pub name: Option<String>,
    pub status: Option<String>,
    pub substatus: Option<String>,
    pub referral_type: Option<String>,
    pub qualification: Option<String>,
    pub direction: Option<String>,
    pub external_reference_id: Option<String>,
    pub created: Option<DateTime<Utc>>,
    pub updated: Option<DateTime<Utc>>,
    pub etag: Option<String>,
    pub etag_lower: Option<String>,
    pub odata_etag: Option<String>,
    pub profile: Profile,
    pub details: Details,
    pub consent_to_contact: Option<bool>,
}

/// `customerProfile`.
#[derive(Default)]
pub(super) struct Profile {
    pub name: Option<String>,
    pub country: Option<String>,
    pub contacts: Vec<Contact>,
    pub ids: Vec<ProfileId>,
    /// Every other key with its strings (the website candidates), in the object's order.
    pub texts: Vec<(String, Vec<String>)>,
}

/// `details`.
#[derive(Default)]
pub(super) struct Details {
    pub deal_value: Option<f64>,
    pub currency: Option<String>,
    pub notes: Option<String>,
}

/// The referral's fields, or `None` when the JSON is not an object.
pub(super) struct Top<'de>(pub Option<Fields<'de>>);

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TopVisitor;
        impl<'de> Visitor<'de> for TopVisitor {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Top<'de>, E> {
                Ok(Top(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Top<'de>, E> {
                Ok(Top(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Top<'de>, E> {
                Ok(Top(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Top<'de>, E> {
                Ok(Top(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Top<'de>, E> {
                Ok(Top(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Top<'de>, E> {
                Ok(Top(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Top<'de>, A::Error> {
                skip_seq(seq)?;
                Ok(Top(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Top<'de>, A::Error> {
                Fields::from_map(map).map(|f| Top(Some(f)))
            }
        }
        deserializer.deserialize_any(TopVisitor)
    }
}

fn text<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<String>, A::Error> {
    Ok(map.next_value::<Leaf>()?.text())
}

impl<'de> FromMap<'de> for Fields<'de> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut f = Fields::default();
        while let Some(Text(key)) = map.next_key::<Text>()? {
            match key.as_ref() {
                "id" => next(&mut map, &mut f.id)?,
                "engagementId" => f.engagement_id = text(&mut map)?,
                "name" => f.name = text(&mut map)?,
                "status" => f.status = text(&mut map)?,
                "substatus" => f.substatus = text(&mut map)?,
                "type" => f.referral_type = text(&mut map)?,
                "qualification" => f.qualification = text(&mut map)?,
                "direction" => f.direction = text(&mut map)?,
                "externalReferenceId" => f.external_reference_id = text(&mut map)?,
                "createdDateTime" => f.created = map.next_value::<Leaf>()?.timestamp(),
                "updatedDateTime" => f.updated = map.next_value::<Leaf>()?.timestamp(),
                "eTag" => f.etag = text(&mut map)?,
                "etag" => f.etag_lower = text(&mut map)?,
                "@odata.etag" => f.odata_etag = text(&mut map)?,
                "customerProfile" => {
                    f.profile = map.next_value::<Object<Profile>>()?.0.unwrap_or_default();
                }
                "details" => {
                    f.details = map.next_value::<Object<Details>>()?.0.unwrap_or_default();
                }
                "consent" => {
                    f.consent_to_contact = map.next_value::<Object<Consent>>()?.0.and_then(|c| c.0);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(f)
    }
}

/// What fetch reads of a referral: whether it has an id, and its `updatedDateTime`.
#[derive(Default)]
pub(super) struct Stamp {
    pub has_id: bool,
    pub updated: Option<DateTime<Utc>>,
}

impl<'de> FromMap<'de> for Stamp {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut stamp = Stamp::default();
        while let Some(Text(key)) = map.next_key::<Text>()? {
            match key.as_ref() {
                "id" => {
                    stamp.has_id = match map.next_value::<Leaf>()? {
                        Leaf::Str(s) => !s.trim().is_empty(),
                        Leaf::Num(_) => true,
                        _ => false,
                    };
                }
                "updatedDateTime" => stamp.updated = map.next_value::<Leaf>()?.timestamp(),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(stamp)
    }
}

impl<'de> FromMap<'de> for Profile {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut p = Profile::default();
        while let Some(Text(key)) = map.next_key::<Text>()? {
            let strings = match key.as_ref() {
                "address" => {
                    p.country = map.next_value::<Object<Address>>()?.0.and_then(|a| a.0);
                    Vec::new()
                }
                "team" => {
                    p.contacts = map
                        .next_value::<Array<Object<ContactFields>>>()?
                        .0
                        .into_iter()
                        .filter_map(|c| c.0.map(|c| c.0))
                        .filter(|c| *c != Contact::default())
                        .collect();
                    Vec::new()
                }
                "ids" => {
                    p.ids = map.next_value::<Ids>()?.0;
                    Vec::new()
                }
                "name" => {
                    let leaf = map.next_value::<Leaf>()?;
                    let strings = match &leaf {
                        Leaf::Str(s) => vec![s.to_string()],
                        _ => Vec::new(),
                    };
                    p.name = leaf.text();
                    strings
                }
                _ => map.next_value::<Strings>()?.0,
            };
            // A repeated key keeps its first place and its last value.
            match p.texts.iter_mut().find(|(k, _)| *k == key) {
                Some((_, values)) => *values = strings,
                None if !strings.is_empty() => p.texts.push((key.into_owned(), strings)),
                None => {}
            }
        }
        Ok(p)
    }
}

struct Address(Option<String>);

impl<'de> FromMap<'de> for Address {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut country = None;
        while let Some(Text(key)) = map.next_key::<Text>()? {
            match key.as_ref() {
                "country" => country = text(&mut map)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Self(country))
    }
}

struct Consent(Option<bool>);

impl<'de> FromMap<'de> for Consent {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut consent = None;
        while let Some(Text(key)) = map.next_key::<Text>()? {
            match key.as_ref() {
                "consentToContact" => consent = map.next_value::<Leaf>()?.boolean(),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Self(consent))
    }
}

impl<'de> FromMap<'de> for Details {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut d = Details::default();
        while let Some(Text(key)) = map.next_key::<Text>()? {
            match key.as_ref() {
                "dealValue" => d.deal_value = map.next_value::<Leaf>()?.number(),
                "currency" => d.currency = text(&mut map)?,
                "notes" => d.notes = text(&mut map)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(d)
    }
}

struct ContactFields(Contact);

impl<'de> FromMap<'de> for ContactFields {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut c = Contact::default();
        let (mut phone_number, mut phone) = (None, None);
        while let Some(Text(key)) = map.next_key::<Text>()? {
            match key.as_ref() {
                "firstName" => c.first_name = text(&mut map)?,
                "lastName" => c.last_name = text(&mut map)?,
                "email" => c.email = text(&mut map)?,
                "phoneNumber" => phone_number = text(&mut map)?,
                "phone" => phone = text(&mut map)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        c.phone = phone_number.or(phone);
        Ok(Self(c))
    }
}

/// `customerProfile.ids`: an array of `{profileType, id}`, one such object, or a
/// `{profileType: id}` map.
#[derive(Default)]
struct Ids(Vec<ProfileId>);

/// One `{profileType, id}` entry.
struct IdEntry(Option<ProfileId>);

impl<'de> FromMap<'de> for IdEntry {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let (mut profile_type, mut id) = (None, None);
        while let Some(Text(key)) = map.next_key::<Text>()? {
            match key.as_ref() {
                "profileType" => profile_type = text(&mut map)?,
                "id" => id = text(&mut map)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Self(profile_id(profile_type, id)))
    }
}

fn profile_id(profile_type: Option<String>, id: Option<String>) -> Option<ProfileId> {
    Some(ProfileId {
        profile_type: profile_type?,
        id: id?,
    })
}

impl<'de> Deserialize<'de> for Ids {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdsVisitor;
        impl<'de> Visitor<'de> for IdsVisitor {
            type Value = Ids;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            scalars_are_default!();
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ids, A::Error> {
                let mut ids = Vec::new();
                while let Some(entry) = seq.next_element::<Object<IdEntry>>()? {
                    ids.extend(entry.0.and_then(|e| e.0));
                }
                Ok(Ids(ids))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ids, A::Error> {
                // Which shape it is shows only once every key is read.
                let mut entries: Vec<(String, Option<String>)> = Vec::new();
                while let Some(Text(key)) = map.next_key::<Text>()? {
                    let value = text(&mut map)?;
                    match entries.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, v)) => *v = value,
                        None => entries.push((key.into_owned(), value)),
                    }
                }
                let field = |name: &str| {
                    entries
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                };
                let (profile_type, id) = (field("profileType"), field("id"));
                if profile_type.is_some() || id.is_some() {
                    return Ok(Ids(profile_id(profile_type.flatten(), id.flatten())
                        .into_iter()
                        .collect()));
                }
                Ok(Ids(entries
                    .into_iter()
                    .filter_map(|(profile_type, id)| profile_id(Some(profile_type), id))
                    .collect()))
            }
        }
        deserializer.deserialize_any(IdsVisitor)
    }
}
