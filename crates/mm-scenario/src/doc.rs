//! The scenario document: the parsed TOML tree with the `--set` overrides spliced in, the mapping
//! from byte spans back to [`Place`]s, and typed accessors that report one error per problem.
//!
//! Spans past the end of the text belong to the overrides: every node of override `i` carries
//! the span `len + 1 + i`, so one byte offset names either a file position or an override.

use std::borrow::Cow;
use std::ops::Range;

use toml::de::{DeArray, DeTable, DeValue};
use toml::Spanned;

use crate::error::{Bounds, FloatRange, Place, Problem, ScenarioError};

/// A TOML value with its span.
pub(crate) type Node<'i> = Spanned<DeValue<'i>>;

/// The text being read, for turning spans into places.
#[derive(Debug)]
pub(crate) struct Doc<'a> {
    origin: &'a str,
    src: &'a str,
    overrides: &'a [String],
}

impl<'a> Doc<'a> {
    /// Parses `src` and applies `overrides` (`KEY=VALUE`, in order) to the tree.
    pub(crate) fn parse(
        src: &'a str,
        origin: &'a str,
        overrides: &'a [String],
    ) -> Result<(Doc<'a>, Spanned<DeTable<'a>>), ScenarioError> {
        let doc = Doc {
            origin,
            src,
            overrides,
        };
        let mut root = DeTable::parse(src).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            doc.error(span, Problem::Syntax(e.message().to_owned()))
        })?;
        for (i, arg) in overrides.iter().enumerate() {
            doc.apply_override(root.get_mut(), i, arg)?;
        }
        Ok((doc, root))
    }

    /// Returns the place a byte span starts at.
    pub(crate) fn place(&self, span: &Range<usize>) -> Place {
        if span.start > self.src.len() {
            let i = span.start - self.src.len() - 1;
            let arg = self.overrides.get(i).map_or("", String::as_str);
            return Place::Set {
                arg: arg.to_owned(),
            };
        }
        let mut offset = span.start;
        while !self.src.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.src[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Place::File {
            origin: self.origin.to_owned(),
            line: before.matches('\n').count() + 1,
            col: before[line_start..].chars().count() + 1,
        }
    }

    /// Builds the error for `problem` at `span`.
    pub(crate) fn error(&self, span: Range<usize>, problem: Problem) -> ScenarioError {
        ScenarioError::Invalid {
            place: self.place(&span),
            problem,
        }
    }

    /// Splices one `KEY=VALUE` override into the tree, creating intermediate tables.
    fn apply_override(
        &self,
        root: &mut DeTable<'a>,
        i: usize,
        arg: &'a str,
    ) -> Result<(), ScenarioError> {
        let base = self.src.len() + 1 + i;
        let span = base..base + 1;
        let err = |problem| self.error(span.clone(), problem);
        let (key, value) = arg.split_once('=').ok_or_else(|| err(Problem::SetSyntax))?;
        let segments: Vec<&str> = key.split('.').map(str::trim).collect();
        let Some((last, parents)) = segments.split_last() else {
            return Err(err(Problem::SetSyntax));
        };
        if segments.iter().any(|s| s.is_empty()) {
            return Err(err(Problem::SetSyntax));
        }
        let value = value.trim();
        let parsed = match DeValue::parse(value) {
            Ok(v) => v.into_inner(),
            // A bare word such as `1TiB` is a string; a broken array, table or quoted string
            // is a mistake worth reporting.
            Err(e) if value.starts_with(['[', '{', '"', '\'']) => {
                return Err(err(Problem::Syntax(e.message().to_owned())));
            }
            Err(_) => DeValue::String(Cow::Borrowed(value)),
        };

        // Walk the parents: a table's key, or an array's index (`process.0.count`).
        enum Slot<'t, 'a> {
            Table(&'t mut DeTable<'a>),
            Array(&'t mut DeArray<'a>),
        }
        let mut slot = Slot::Table(root);
        let mut path = String::new();
        for (depth, seg) in parents.iter().enumerate() {
            let child: &mut Node<'a> = match slot {
                Slot::Table(table) => {
                    let key = Spanned::new(span.clone(), Cow::Owned((*seg).to_owned()));
                    table.entry(key).or_insert_with(|| {
                        Spanned::new(span.clone(), DeValue::Table(DeTable::new()))
                    })
                }
                Slot::Array(array) => {
                    let len = array.len();
                    let index = seg.parse::<usize>().map_err(|_| {
                        err(Problem::SetArrayIndex {
                            key: path.clone(),
                            found: (*seg).to_owned(),
                            len,
                        })
                    })?;
                    array.get_mut(index).ok_or_else(|| {
                        err(Problem::SetArrayIndex {
                            key: path.clone(),
                            found: (*seg).to_owned(),
                            len,
                        })
                    })?
                }
            };
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(seg);
            slot = match child.get_mut() {
                DeValue::Table(t) => Slot::Table(t),
                DeValue::Array(a) => Slot::Array(a),
                other => {
                    return Err(err(Problem::SetThroughValue {
                        key: path,
                        child: segments[depth + 1].to_owned(),
                        found: a_type(other),
                    }))
                }
            };
        }
        match slot {
            Slot::Table(table) => {
                table.remove(*last);
                table.insert(
                    Spanned::new(span.clone(), Cow::Owned((*last).to_owned())),
                    respan(parsed, &span),
                );
            }
            Slot::Array(array) => {
                let len = array.len();
                let index = last.parse::<usize>().ok().filter(|i| *i < len);
                let Some(index) = index else {
                    return Err(err(Problem::SetArrayIndex {
                        key: path,
                        found: (*last).to_owned(),
                        len,
                    }));
                };
                if let Some(item) = array.get_mut(index) {
                    *item = respan(parsed, &span);
                }
            }
        }
        Ok(())
    }
}

/// Gives `value` and everything inside it the span `span`.
fn respan<'i>(value: DeValue<'i>, span: &Range<usize>) -> Node<'i> {
    let value = match value {
        DeValue::Array(items) => {
            let mut array = DeArray::new();
            for item in items {
                array.push(respan(item.into_inner(), span));
            }
            DeValue::Array(array)
        }
        DeValue::Table(entries) => {
            let mut table = DeTable::new();
            for (k, v) in entries {
                table.insert(
                    Spanned::new(span.clone(), k.into_inner()),
                    respan(v.into_inner(), span),
                );
            }
            DeValue::Table(table)
        }
        other => other,
    };
    Spanned::new(span.clone(), value)
}

/// Names a value's type with its article, for messages.
pub(crate) fn a_type(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// A table being read: its dotted path, its name for messages and its span.
#[derive(Debug)]
pub(crate) struct Table<'d, 'a> {
    pub(crate) doc: &'d Doc<'a>,
    path: String,
    name: String,
    pub(crate) span: Range<usize>,
    table: &'d DeTable<'a>,
}

impl<'d, 'a> Table<'d, 'a> {
    /// Returns the document root.
    pub(crate) fn root(doc: &'d Doc<'a>, root: &'d Spanned<DeTable<'a>>) -> Self {
        Table {
            doc,
            path: String::new(),
            name: "the top level".to_owned(),
            span: root.span(),
            table: root.get_ref(),
        }
    }

    /// Returns the full dotted path of `key` in this table.
    pub(crate) fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Rejects any key not in `allowed`, naming the first one in the text.
    pub(crate) fn deny_unknown(&self, allowed: &[&str]) -> Result<(), ScenarioError> {
        let unknown = self
            .table
            .iter()
            .filter(|(k, _)| !allowed.contains(&k.get_ref().as_ref()))
            .min_by_key(|(k, _)| k.span().start);
        match unknown {
            Some((k, _)) => Err(self.doc.error(
                k.span(),
                Problem::UnknownKey {
                    key: k.get_ref().to_string(),
                    table: self.name.clone(),
                },
            )),
            None => Ok(()),
        }
    }

    /// Returns the value of `key`, if present.
    pub(crate) fn get(&self, key: &str) -> Option<&'d Node<'a>> {
        self.table.get(key)
    }

    /// Returns the value of `key`, or a missing-key error at the table.
    pub(crate) fn require(&self, key: &'static str) -> Result<&'d Node<'a>, ScenarioError> {
        self.get(key).ok_or_else(|| {
            self.doc.error(
                self.span.clone(),
                Problem::MissingKey {
                    key,
                    table: self.name.clone(),
                },
            )
        })
    }

    /// Builds a type error for `key`.
    pub(crate) fn wrong_type(
        &self,
        key: &str,
        node: &Node<'a>,
        expected: &'static str,
    ) -> ScenarioError {
        self.doc.error(
            node.span(),
            Problem::WrongType {
                key: self.key_path(key),
                expected,
                found: a_type(node.get_ref()),
            },
        )
    }

    /// Returns the sub-table `key`, if present.
    pub(crate) fn table(&self, key: &str) -> Result<Option<Table<'d, 'a>>, ScenarioError> {
        self.get(key)
            .map(|node| self.as_table(key, node))
            .transpose()
    }

    /// Returns the required sub-table `key`.
    pub(crate) fn require_table(&self, key: &'static str) -> Result<Table<'d, 'a>, ScenarioError> {
        let node = self.require(key)?;
        self.as_table(key, node)
    }

    /// Reads the value of `key` as a table.
    fn as_table(&self, key: &str, node: &'d Node<'a>) -> Result<Table<'d, 'a>, ScenarioError> {
        match node.get_ref() {
            DeValue::Table(table) => {
                let path = self.key_path(key);
                Ok(Table {
                    doc: self.doc,
                    name: format!("[{path}]"),
                    path,
                    span: node.span(),
                    table,
                })
            }
            _ => Err(self.wrong_type(key, node, "a table")),
        }
    }

    /// Returns the array of tables `key` (such as `[[machine.zone]]`), if present.
    pub(crate) fn tables(&self, key: &str) -> Result<Option<Vec<Table<'d, 'a>>>, ScenarioError> {
        let Some(node) = self.get(key) else {
            return Ok(None);
        };
        let path = self.key_path(key);
        let DeValue::Array(items) = node.get_ref() else {
            return Err(self.wrong_type(key, node, "an array of tables"));
        };
        items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::Table(table) => Ok(Table {
                    doc: self.doc,
                    name: format!("[[{path}]]"),
                    path: path.clone(),
                    span: item.span(),
                    table,
                }),
                other => Err(self.doc.error(
                    item.span(),
                    Problem::WrongType {
                        key: format!("each entry of {path}"),
                        expected: "a table",
                        found: a_type(other),
                    },
                )),
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// Returns the string `key`, if present.
    pub(crate) fn string(&self, key: &str) -> Result<Option<Spanned<&'d str>>, ScenarioError> {
        let Some(node) = self.get(key) else {
            return Ok(None);
        };
        match node.get_ref() {
            DeValue::String(s) => Ok(Some(Spanned::new(node.span(), s.as_ref()))),
            _ => Err(self.wrong_type(key, node, "a string")),
        }
    }

    /// Returns the required string `key`, with its span.
    pub(crate) fn require_string(
        &self,
        key: &'static str,
    ) -> Result<Spanned<&'d str>, ScenarioError> {
        let node = self.require(key)?;
        match node.get_ref() {
            DeValue::String(s) => Ok(Spanned::new(node.span(), s.as_ref())),
            _ => Err(self.wrong_type(key, node, "a string")),
        }
    }

    /// Returns the span of the key `key` itself (not its value), if present.
    pub(crate) fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(k, _)| k.span())
    }

    /// Returns the table's name for messages (`[machine]`, `[[process.phase]]`, …).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Returns the number `key` (a float, or an integer read as one) within `range`, if
    /// present.
    pub(crate) fn float(
        &self,
        key: &str,
        range: FloatRange,
    ) -> Result<Option<Spanned<f64>>, ScenarioError> {
        let Some(node) = self.get(key) else {
            return Ok(None);
        };
        let value = match node.get_ref() {
            DeValue::Float(f) => f
                .as_str()
                .replace('_', "")
                .parse::<f64>()
                .unwrap_or(f64::NAN),
            DeValue::Integer(_) => int_in(
                self.doc,
                &self.key_path(key),
                node,
                Bounds::Range(i64::MIN, i64::MAX),
            )? as f64,
            _ => return Err(self.wrong_type(key, node, "a number")),
        };
        if !range.contains(value) {
            return Err(self.doc.error(
                node.span(),
                Problem::FloatOutOfRange {
                    key: self.key_path(key),
                    value,
                    range,
                },
            ));
        }
        Ok(Some(Spanned::new(node.span(), value)))
    }

    /// Returns the boolean `key`, if present.
    pub(crate) fn boolean(&self, key: &str) -> Result<Option<bool>, ScenarioError> {
        match self.get(key) {
            None => Ok(None),
            Some(node) => match node.get_ref() {
                DeValue::Boolean(b) => Ok(Some(*b)),
                _ => Err(self.wrong_type(key, node, "a boolean")),
            },
        }
    }

    /// Returns the integer `key` within `bounds`, if present.
    pub(crate) fn int(&self, key: &str, bounds: Bounds) -> Result<Option<i64>, ScenarioError> {
        self.get(key)
            .map(|node| int_in(self.doc, &self.key_path(key), node, bounds))
            .transpose()
    }

    /// Returns the required integer `key` within `bounds`, with its span.
    pub(crate) fn require_int(
        &self,
        key: &'static str,
        bounds: Bounds,
    ) -> Result<Spanned<i64>, ScenarioError> {
        let node = self.require(key)?;
        let v = int_in(self.doc, &self.key_path(key), node, bounds)?;
        Ok(Spanned::new(node.span(), v))
    }
}

/// Reads `node` as an integer within `bounds`; `key` names it in messages.
pub(crate) fn int_in(
    doc: &Doc<'_>,
    key: &str,
    node: &Node<'_>,
    bounds: Bounds,
) -> Result<i64, ScenarioError> {
    let DeValue::Integer(i) = node.get_ref() else {
        return Err(doc.error(
            node.span(),
            Problem::WrongType {
                key: key.to_owned(),
                expected: "an integer",
                found: a_type(node.get_ref()),
            },
        ));
    };
    // The parser only produces integers that fit in an i64.
    let value = i64::from_str_radix(i.as_str(), i.radix()).unwrap_or(i64::MAX);
    if bounds.contains(value) {
        Ok(value)
    } else {
        Err(doc.error(
            node.span(),
            Problem::OutOfRange {
                key: key.to_owned(),
                value,
                bounds,
            },
        ))
    }
}
