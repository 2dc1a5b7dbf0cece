//! Reads: `get` of one object or a list (paged, filtered by selectors on the server
//! and by `where` here), and the GET/LIST helpers the writes use.

use serde_json::{Value, json};

use super::client::{Req, api_error, query};
use super::display::quote;
use super::{ApiRes, Run};
use crate::expr;
use crate::providers::OpError;

/// Page size of lists (kubectl's `--chunk-size` default).
const PAGE: &str = "500";

/// What to list.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListScope<'a> {
    /// None: every namespace (or a cluster-scoped kind).
    pub ns: Option<&'a str>,
    pub labels: Option<&'a str>,
    pub fields: Option<&'a str>,
}

/// `kubectl get pods -n prod -l a=b --field-selector x=y -o json`.
pub(crate) fn get_line(res: &ApiRes, name: Option<&str>, scope: &ListScope<'_>) -> String {
    let mut line = String::from("kubectl get ");
    let kind =
        if res.group.is_empty() || super::spec::Target::builtin_named(&res.plural, &res.group) {
            if name.is_some() {
                res.singular.clone()
            } else {
                res.plural.clone()
            }
        } else {
            format!("{}.{}", res.plural, res.group)
        };
    line.push_str(&kind);
    if let Some(n) = name {
        line.push(' ');
        line.push_str(&quote(n));
    }
    match scope.ns {
        Some(ns) if res.namespaced => line.push_str(&format!(" -n {}", quote(ns))),
        None if res.namespaced && name.is_none() => line.push_str(" -A"),
        _ => {}
    }
    if let Some(l) = scope.labels {
        line.push_str(&format!(" -l {}", quote(l)));
    }
    if let Some(f) = scope.fields {
        line.push_str(&format!(" --field-selector {}", quote(f)));
    }
    line.push_str(" -o json");
    line
}

/// Give list items the `apiVersion`/`kind` a list response leaves out, so a saved
/// object reads the same as one fetched by name.
fn typed(mut item: Value, res: &ApiRes) -> Value {
    if let Some(m) = item.as_object_mut() {
        m.entry("apiVersion")
            .or_insert_with(|| json!(res.api_version()));
        m.entry("kind").or_insert_with(|| json!(res.kind));
    }
    item
}

impl Run<'_> {
    /// `get`: the object (with `name`) or the list of objects, filtered by `where`.
    pub async fn get(&self) -> Result<Value, OpError> {
        let res = self.res().await?;
        let scope = ListScope {
            ns: self.ns(&res),
            labels: self.spec.selector.as_deref(),
            fields: self.spec.fields.as_deref(),
        };
        if let Some(name) = &self.spec.name {
            let r = self.get_resp(&res, scope.ns, name).await?;
            if !r.ok() {
                return Err(api_error(&r));
            }
            let obj = typed(r.body, &res);
            return Ok(match &self.spec.where_ {
                Some(w) => {
                    let keep = self.filter(w, &res, vec![obj])?;
                    keep.into_iter().next().unwrap_or(Value::Null)
                }
                None => obj,
            });
        }
        let items = self.list_objects(&res, &scope).await?;
        let items = match &self.spec.where_ {
            Some(w) => self.filter(w, &res, items)?,
            None => items,
        };
        Ok(Value::Array(items))
    }

    /// GET one object, whatever the answer.
    pub async fn get_resp(
        &self,
        res: &ApiRes,
        ns: Option<&str>,
        name: &str,
    ) -> Result<super::client::Resp, OpError> {
        let scope = ListScope {
            ns,
            ..Default::default()
        };
        self.send(Req::get(res.url(ns, Some(name), None)).kubectl(get_line(
            res,
            Some(name),
            &scope,
        )))
        .await
    }

    /// GET one object; `None` on 404.
    pub async fn get_object(
        &self,
        res: &ApiRes,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, OpError> {
        let r = self.get_resp(res, ns, name).await?;
        match r.status {
            404 => Ok(None),
            _ if r.ok() => Ok(Some(typed(r.body, res))),
            _ => Err(api_error(&r)),
        }
    }

    /// LIST every page.
    pub async fn list_objects(
        &self,
        res: &ApiRes,
        scope: &ListScope<'_>,
    ) -> Result<Vec<Value>, OpError> {
        let ns = if res.namespaced { scope.ns } else { None };
        let line = get_line(res, None, scope);
        let mut items = Vec::new();
        let mut cont = String::new();
        loop {
            let q = query(&[
                ("labelSelector", scope.labels.unwrap_or("")),
                ("fieldSelector", scope.fields.unwrap_or("")),
                ("limit", PAGE),
                ("continue", &cont),
            ]);
            let r = self
                .send(Req::get(format!("{}{q}", res.url(ns, None, None))).kubectl(line.clone()))
                .await?;
            if !r.ok() {
                return Err(api_error(&r));
            }
            let mut body = r.body;
            if let Some(page) = body.get_mut("items").and_then(Value::as_array_mut) {
                items.extend(page.drain(..).map(|i| typed(i, res)));
            }
            match body
                .pointer("/metadata/continue")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
            {
                Some(c) => cont = c.to_string(),
                None => return Ok(items),
            }
        }
    }

    /// Keep the objects for which `cond` holds; each is bound to `object` and to the
    /// kind's singular name, next to the run's variables.
    pub fn filter(
        &self,
        cond: &str,
        res: &ApiRes,
        items: Vec<Value>,
    ) -> Result<Vec<Value>, OpError> {
        if items.is_empty() {
            return Ok(items);
        }
        let singular = self
            .spec
            .resource
            .as_ref()
            .map(|t| t.singular.clone())
            .unwrap_or_else(|| res.singular.clone());
        let keep = expr::eval_bool_each(cond, &self.cx.vars, &["object", &singular], &items)
            .map_err(|e| OpError::Failed {
                message: format!("the condition `{cond}` failed on {}: {e}", res.plural),
                result: None,
            })?;
        Ok(items
            .into_iter()
            .zip(keep)
            .filter_map(|(item, k)| k.then_some(item))
            .collect())
    }
}
