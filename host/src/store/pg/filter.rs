//! The WHERE clause builder shared by the key, data-key and secret listings (the SQLite
//! store's `filter.rs`, with PostgreSQL's numbered parameters and JSON functions).

use super::audit::{refs, Args};
use super::like_pattern;
use crate::error::Result;
use crate::store::{KeyState, TagFilter};
use postgres::types::ToSql;
use postgres::Row;

pub(super) struct Filter {
    table: &'static str,
    columns: &'static str,
    clauses: Vec<String>,
    args: Args,
}

impl Filter {
    pub(super) fn new(
        table: &'static str,
        columns: &'static str,
        region: &str,
        owner_uin: u64,
    ) -> Self {
        Filter {
            table,
            columns,
            clauses: vec!["region = $1".into(), "owner_uin = $2".into()],
            args: vec![Box::new(region.to_string()), Box::new(owner_uin as i64)],
        }
    }

    /// Adds an argument; returns its placeholder.
    fn arg(&mut self, v: impl ToSql + Sync + Send + 'static) -> String {
        self.args.push(Box::new(v));
        format!("${}", self.args.len())
    }

    pub(super) fn eq(&mut self, column: &str, value: impl ToSql + Sync + Send + 'static) {
        let p = self.arg(value);
        self.clauses.push(format!("{column} = {p}"));
    }

    pub(super) fn states(&mut self, states: &Option<Vec<KeyState>>) {
        if let Some(states) = states {
            let names: Vec<String> = states.iter().map(|s| s.as_str().to_string()).collect();
            let p = self.arg(names);
            self.clauses.push(format!("state = ANY({p})"));
        }
    }

    pub(super) fn user_created(&mut self, user_created: Option<bool>) {
        match user_created {
            Some(true) => self.clauses.push("owner = 'user'".into()),
            Some(false) => self.clauses.push("owner <> 'user'".into()),
            None => {}
        }
    }

    /// Substring match on either column, LIKE wildcards in `text` taken literally. ILIKE,
    /// because SQLite's LIKE ignores ASCII case and the two stores answer alike.
    pub(super) fn search(&mut self, columns: [&str; 2], text: &Option<String>) {
        if let Some(text) = text {
            let p = self.arg(like_pattern(text));
            self.clauses.push(format!(
                "({} ILIKE {p} ESCAPE '\\' OR {} ILIKE {p} ESCAPE '\\')",
                columns[0], columns[1]
            ));
        }
    }

    /// Resources carrying a tag key (and, if given, one of the values) for every filter.
    pub(super) fn tags(&mut self, filters: &[TagFilter]) {
        let table = self.table;
        for tf in filters {
            let key = self.arg(tf.key.clone());
            let mut c = format!(
                "EXISTS (SELECT 1 FROM jsonb_array_elements({table}.tags::jsonb) t \
                 WHERE t.value->>'TagKey' = {key}"
            );
            if !tf.values.is_empty() {
                let values = self.arg(tf.values.clone());
                c.push_str(&format!(" AND t.value->>'TagValue' = ANY({values})"));
            }
            c.push(')');
            self.clauses.push(c);
        }
    }

    /// The total match count and one page, ordered by creation time, then insertion order.
    pub(super) fn page<T>(
        mut self,
        c: &mut impl postgres::GenericClient,
        newest_first: bool,
        offset: u64,
        limit: u64,
        row: fn(&Row) -> Result<T>,
    ) -> Result<(u64, Vec<T>)> {
        let (table, columns) = (self.table, self.columns);
        let where_sql = self.clauses.join(" AND ");
        let total: i64 = c
            .query_one(
                &format!("SELECT COUNT(*) FROM {table} WHERE {where_sql}"),
                &refs(&self.args),
            )?
            .get(0);
        let order = if newest_first { "DESC" } else { "ASC" };
        let l = self.arg(limit.min(i64::MAX as u64) as i64);
        let o = self.arg(offset.min(i64::MAX as u64) as i64);
        let sql = format!(
            "SELECT {columns} FROM {table} WHERE {where_sql} \
             ORDER BY create_time {order}, rid {order} LIMIT {l} OFFSET {o}"
        );
        let rows = c.query(&sql, &refs(&self.args))?;
        Ok((total as u64, rows.iter().map(row).collect::<Result<_>>()?))
    }
}
