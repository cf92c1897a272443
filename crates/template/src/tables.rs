//! DynamoDB tables: `AWS::DynamoDB::Table`, `AWS::DynamoDB::GlobalTable` and
//! `AWS::Serverless::SimpleTable`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Problem};
use crate::eval::Context;
use crate::names;
use crate::props::{Fields, Props, as_strings};
use crate::template::Resource;

/// A DynamoDB table to create locally.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Table {
    /// The logical id.
    pub logical_id: String,
    /// Its resource type.
    pub resource_type: String,
    /// `TableName`, or `<stack>-<LogicalId>`.
    pub table_name: String,
    /// `arn:…:dynamodb:<region>:<account>:table/<name>`.
    pub arn: String,
    /// `KeySchema`: the partition key, then the sort key if any.
    pub key_schema: Vec<KeyElement>,
    /// `AttributeDefinitions`.
    pub attribute_definitions: Vec<AttributeDefinition>,
    /// `GlobalSecondaryIndexes`.
    pub global_secondary_indexes: Vec<SecondaryIndex>,
    /// `LocalSecondaryIndexes`.
    pub local_secondary_indexes: Vec<SecondaryIndex>,
    /// `TimeToLiveSpecification`, when enabled.
    pub time_to_live_attribute: Option<String>,
    /// `StreamSpecification.StreamViewType` (DynamoDB Local keeps the stream; nothing reads it).
    pub stream_view_type: Option<String>,
    /// `BillingMode`: `PAY_PER_REQUEST` or `PROVISIONED` (CloudFormation's default for
    /// `AWS::DynamoDB::Table`).
    pub billing_mode: String,
    /// `ProvisionedThroughput` (read, write capacity units), for `PROVISIONED`.
    pub provisioned_throughput: Option<Throughput>,
}

/// One element of a key schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyElement {
    /// `AttributeName`.
    pub attribute_name: String,
    /// `HASH` (partition key) or `RANGE` (sort key).
    pub key_type: String,
}

/// One attribute definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributeDefinition {
    /// `AttributeName`.
    pub attribute_name: String,
    /// `S`, `N` or `B`.
    pub attribute_type: String,
}

/// A global or local secondary index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecondaryIndex {
    /// `IndexName`.
    pub index_name: String,
    /// `KeySchema`.
    pub key_schema: Vec<KeyElement>,
    /// `Projection.ProjectionType`: `ALL`, `KEYS_ONLY` or `INCLUDE`.
    pub projection_type: String,
    /// `Projection.NonKeyAttributes`, for `INCLUDE`.
    pub non_key_attributes: Vec<String>,
}

/// Provisioned capacity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Throughput {
    /// `ReadCapacityUnits`.
    pub read_capacity_units: u64,
    /// `WriteCapacityUnits`.
    pub write_capacity_units: u64,
}

/// The tables among `present`, by logical id.
pub(crate) fn build(ctx: &Context<'_>, present: &[(&str, &Resource)]) -> Result<BTreeMap<String, Table>, Error> {
    let mut tables = BTreeMap::new();
    for (logical_id, resource) in present {
        let t = resource.resource_type.as_str();
        if names::TABLE_TYPES.contains(&t) {
            let table = if t == "AWS::Serverless::SimpleTable" {
                simple_table(ctx, logical_id, resource)?
            } else {
                table(ctx, logical_id, resource)?
            };
            tables.insert((*logical_id).to_owned(), table);
        }
    }
    Ok(tables)
}

fn names_of(ctx: &Context<'_>, logical_id: &str, path: &str) -> Result<(String, String), Error> {
    let name = names::physical_id(ctx, logical_id, "Ref", path)?;
    let p = ctx.pseudo;
    let arn = format!("arn:{}:dynamodb:{}:{}:table/{name}", p.partition, p.region, p.account_id);
    Ok((name, arn))
}

fn table(ctx: &Context<'_>, logical_id: &str, resource: &Resource) -> Result<Table, Error> {
    let props = Props::new(ctx, logical_id, resource);
    let (table_name, arn) = names_of(ctx, logical_id, &props.path("TableName"))?;
    let key_schema = match props.get("KeySchema")? {
        Some(schema) => key_schema(&schema, &props.path("KeySchema"))?,
        None => return Err(Error::at(props.path("KeySchema"), Problem::Required)),
    };
    let attribute_definitions = match props.get("AttributeDefinitions")? {
        None => Vec::new(),
        Some(definitions) => list(&definitions, &props.path("AttributeDefinitions"), |item, path| {
            let fields = Fields::of(item, path)?;
            Ok(AttributeDefinition {
                attribute_name: fields.required_string("AttributeName")?,
                attribute_type: fields.required_string("AttributeType")?,
            })
        })?,
    };
    let indexes = |key: &str| -> Result<Vec<SecondaryIndex>, Error> {
        match props.get(key)? {
            None => Ok(Vec::new()),
            Some(indexes) => list(&indexes, &props.path(key), secondary_index),
        }
    };
    let time_to_live_attribute = match props.get("TimeToLiveSpecification")? {
        None => None,
        Some(ttl) => {
            let fields = Fields::of(&ttl, &props.path("TimeToLiveSpecification"))?;
            if fields.boolean("Enabled")?.unwrap_or(false) { fields.string("AttributeName")? } else { None }
        }
    };
    let stream_view_type = match props.get("StreamSpecification")? {
        None => None,
        Some(stream) => Fields::of(&stream, &props.path("StreamSpecification"))?.string("StreamViewType")?,
    };
    let provisioned_throughput = match props.get("ProvisionedThroughput")? {
        None => None,
        Some(throughput) => Some(throughput_of(&throughput, &props.path("ProvisionedThroughput"))?),
    };
    Ok(Table {
        logical_id: logical_id.to_owned(),
        resource_type: resource.resource_type.clone(),
        table_name,
        arn,
        key_schema,
        attribute_definitions,
        global_secondary_indexes: indexes("GlobalSecondaryIndexes")?,
        local_secondary_indexes: indexes("LocalSecondaryIndexes")?,
        time_to_live_attribute,
        stream_view_type,
        billing_mode: props.string("BillingMode")?.unwrap_or_else(|| "PROVISIONED".to_owned()),
        provisioned_throughput,
    })
}

/// SAM's table: a partition key only (`PrimaryKey`, by default `id` of type `String`).
fn simple_table(ctx: &Context<'_>, logical_id: &str, resource: &Resource) -> Result<Table, Error> {
    let props = Props::new(ctx, logical_id, resource);
    let (table_name, arn) = names_of(ctx, logical_id, &props.path("TableName"))?;
    let (name, sam_type) = match props.get("PrimaryKey")? {
        None => ("id".to_owned(), "String".to_owned()),
        Some(key) => {
            let fields = Fields::of(&key, &props.path("PrimaryKey"))?;
            (fields.required_string("Name")?, fields.required_string("Type")?)
        }
    };
    let attribute_type = match sam_type.as_str() {
        "String" => "S",
        "Number" => "N",
        "Binary" => "B",
        _ => {
            return Err(Error::at(
                props.path("PrimaryKey.Type"),
                Problem::Expected { expected: "String, Number or Binary", found: format!("{sam_type:?}") },
            ));
        }
    };
    let provisioned_throughput = match props.get("ProvisionedThroughput")? {
        None => None,
        Some(throughput) => Some(throughput_of(&throughput, &props.path("ProvisionedThroughput"))?),
    };
    Ok(Table {
        logical_id: logical_id.to_owned(),
        resource_type: resource.resource_type.clone(),
        table_name,
        arn,
        key_schema: vec![KeyElement { attribute_name: name.clone(), key_type: "HASH".to_owned() }],
        attribute_definitions: vec![AttributeDefinition {
            attribute_name: name,
            attribute_type: attribute_type.to_owned(),
        }],
        global_secondary_indexes: Vec::new(),
        local_secondary_indexes: Vec::new(),
        time_to_live_attribute: None,
        stream_view_type: None,
        // SAM makes an on-demand table unless capacity is given.
        billing_mode: if provisioned_throughput.is_some() { "PROVISIONED" } else { "PAY_PER_REQUEST" }.to_owned(),
        provisioned_throughput,
    })
}

fn list<T>(value: &Value, path: &str, item: impl Fn(&Value, &str) -> Result<T, Error>) -> Result<Vec<T>, Error> {
    match value {
        Value::Array(items) => items.iter().enumerate().map(|(i, v)| item(v, &format!("{path}[{i}]"))).collect(),
        other => Err(Error::at(path, Problem::Expected { expected: "a list", found: crate::eval::kind(Some(other)) })),
    }
}

fn key_schema(value: &Value, path: &str) -> Result<Vec<KeyElement>, Error> {
    list(value, path, |item, path| {
        let fields = Fields::of(item, path)?;
        Ok(KeyElement {
            attribute_name: fields.required_string("AttributeName")?,
            key_type: fields.required_string("KeyType")?,
        })
    })
}

fn secondary_index(value: &Value, path: &str) -> Result<SecondaryIndex, Error> {
    let fields = Fields::of(value, path)?;
    let key_schema = match fields.get("KeySchema") {
        Some(schema) => key_schema(schema, &fields.path("KeySchema"))?,
        None => return Err(Error::at(fields.path("KeySchema"), Problem::Required)),
    };
    let (projection_type, non_key_attributes) = match fields.get("Projection") {
        None => ("ALL".to_owned(), Vec::new()),
        Some(projection) => {
            let projection_fields = Fields::of(projection, &fields.path("Projection"))?;
            let non_key = match projection_fields.get("NonKeyAttributes") {
                None => Vec::new(),
                Some(attributes) => as_strings(attributes, &projection_fields.path("NonKeyAttributes"))?,
            };
            (projection_fields.string("ProjectionType")?.unwrap_or_else(|| "ALL".to_owned()), non_key)
        }
    };
    Ok(SecondaryIndex {
        index_name: fields.required_string("IndexName")?,
        key_schema,
        projection_type,
        non_key_attributes,
    })
}

fn throughput_of(value: &Value, path: &str) -> Result<Throughput, Error> {
    let fields = Fields::of(value, path)?;
    let units = |key: &str| fields.integer(key)?.ok_or_else(|| Error::at(fields.path(key), Problem::Required));
    Ok(Throughput {
        read_capacity_units: units("ReadCapacityUnits")?,
        write_capacity_units: units("WriteCapacityUnits")?,
    })
}
