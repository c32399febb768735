//! Bench and test helpers for PostgreSQL (feature `testing`): the bulk load, creating and
//! dropping databases, and statement-level access.

use sqlx::Connection;
use sqlx::postgres::{PgConnection, PgPool};

use super::PgStore;
use crate::{Result, StoreError};

impl PgStore {
    /// Creates the database `name` on the server `admin_url` connects to and returns the new
    /// database's URL (set-up scripts, tests). `name` is ASCII letters, digits and `_`.
    pub async fn create_database(admin_url: &str, name: &str) -> Result<String> {
        admin_statement(
            admin_url,
            &format!("CREATE DATABASE \"{}\"", plain_name(name)?),
        )
        .await?;
        Ok(url_with_database(admin_url, name))
    }

    /// Drops the database `name` if it exists, ending its open connections.
    pub async fn drop_database(admin_url: &str, name: &str) -> Result<()> {
        admin_statement(
            admin_url,
            &format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                plain_name(name)?
            ),
        )
        .await
    }

    /// Statement-level access (benchmarks, administration).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// A database name safe to put in SQL as is.
fn plain_name(name: &str) -> Result<&str> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        Ok(name)
    } else {
        Err(StoreError::Database(sqlx::Error::Configuration(
            format!("database name {name:?}: use ASCII letters, digits and _").into(),
        )))
    }
}

/// Runs one statement (outside a transaction) on a connection of its own.
async fn admin_statement(admin_url: &str, sql: &str) -> Result<()> {
    let mut conn = PgConnection::connect(admin_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// `url` with its database replaced by `database`.
fn url_with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_in_the_url() {
        assert_eq!(
            url_with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            url_with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            url_with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }

    #[test]
    fn only_plain_database_names_reach_sql() {
        assert!(plain_name("balie_test_1").is_ok());
        assert!(plain_name("x\"; DROP TABLE users; --").is_err());
        assert!(plain_name("").is_err());
    }
}
