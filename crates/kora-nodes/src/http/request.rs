//! HTTPRequestNode and RESTClientNode.

use std::sync::Arc;

use async_trait::async_trait;
use kora_model::catalog::{NodeTypeInfo, ParamInfo, ParamKind};
use kora_model::value::py_str;
use kora_model::{Map, Value};

use crate::builtin::{info, input_error};
use crate::{Node, NodeContext, NodeError};

use super::Http;
use super::client::{request, request_params, url_param};

pub(crate) struct HttpRequest {
    info: NodeTypeInfo,
    http: Arc<Http>,
}

impl HttpRequest {
    pub(super) fn new(http: Arc<Http>) -> Self {
        let mut params = vec![
            ParamInfo::required("url", "the URL, http:// or https://").kind(ParamKind::String),
        ];
        params.extend(request_params());
        HttpRequest {
            info: info(
                "HTTPRequestNode",
                "Sends an HTTP request and outputs the response; success is true for a 2xx status.",
                params,
                vec!["response", "status_code", "success"],
            ),
            http,
        }
    }
}

#[async_trait]
impl Node for HttpRequest {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        const NODE: &str = "HTTPRequestNode";
        let req = request(NODE, &input, url_param(NODE, &input, "url")?)?;
        Ok(self.http.send(NODE, &req).await?.output())
    }
}

pub(crate) struct RestClient {
    info: NodeTypeInfo,
    http: Arc<Http>,
}

impl RestClient {
    pub(super) fn new(http: Arc<Http>) -> Self {
        let mut params = vec![
            ParamInfo::required("base_url", "the API's base URL").kind(ParamKind::String),
            ParamInfo::required(
                "resource",
                "the resource path, with {name} placeholders filled from path_params",
            )
            .kind(ParamKind::String),
            ParamInfo::optional("path_params", "values of the resource's placeholders")
                .kind(ParamKind::Map),
            ParamInfo::optional("query_params", "query parameters (params works too)")
                .kind(ParamKind::Map),
        ];
        params.extend(request_params());
        RestClient {
            info: info(
                "RESTClientNode",
                "Calls a REST resource (base_url + resource with path parameters) and outputs its parsed data.",
                params,
                vec!["data", "status_code", "success", "response"],
            ),
            http,
        }
    }
}

#[async_trait]
impl Node for RestClient {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, mut input: Map) -> Result<Map, NodeError> {
        const NODE: &str = "RESTClientNode";
        let base = url_param(NODE, &input, "base_url")?;
        let mut resource = input
            .get("resource")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(Value::Object(p)) = input.get("path_params") {
            for (k, v) in p {
                let enc: String = py_str(v)
                    .bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                            (b as char).to_string()
                        }
                        _ => format!("%{b:02X}"),
                    })
                    .collect();
                resource = resource.replace(&format!("{{{k}}}"), &enc);
            }
        }
        if let Some(missing) = resource.find('{') {
            return Err(input_error(
                NODE,
                format!(
                    "resource {resource:?} still has a placeholder at {missing}: give it in path_params"
                ),
            ));
        }
        if let Some(q) = input.remove("query_params") {
            input.insert("params".into(), q);
        }
        let url = format!(
            "{}/{}",
            base.trim_end_matches('/'),
            resource.trim_start_matches('/')
        );
        let resp = self.http.send(NODE, &request(NODE, &input, url)?).await?;
        let data = resp.content.clone();
        let mut out = resp.output();
        out.insert("data".into(), data);
        Ok(out)
    }
}
