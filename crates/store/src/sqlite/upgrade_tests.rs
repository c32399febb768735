//! An installation from before brands and roles, upgraded by migration 0009: its brand gets
//! a slug, its users become members with their role, its admins owners, its tokens and
//! customers belong to its brand.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use balie_core::{ConversationStatus, CustomerId, Role};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

use super::{MIGRATIONS, MIGRATIONS_TABLE, SqliteStore};
use crate::{Channels, Conversations, Directory};

#[tokio::test]
async fn an_installation_from_before_brands_keeps_its_users_roles_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("balie.db");
    {
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        sqlx::raw_sql(MIGRATIONS_TABLE)
            .execute(&pool)
            .await
            .unwrap();
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v < 9) {
            // The released migrations, compiled in: no outside input.
            sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 1)")
                .bind(version)
                .execute(&pool)
                .await
                .unwrap();
        }
        sqlx::raw_sql(
            "INSERT INTO brands (id, name, created_at) VALUES (1, 'Bakkerij Jansen', 1);
             INSERT INTO channels (id, brand_id, kind, name, created_at) VALUES (1, 1, 'api', 'web', 1);
             INSERT INTO customers (id, display_name, created_at) VALUES (1, 'Anna', 1);
             INSERT INTO conversations (id, brand_id, channel_id, customer_id, status, priority,
                 last_message_at, created_at, updated_at) VALUES (1, 1, 1, 1, 'open', 2, 1, 1, 1);
             INSERT INTO users (id, email, name, role, password_hash, created_at)
                 VALUES (1, 'lead@jansen.nl', 'Lead', 'admin', 'h', 1),
                        (2, 'anne@jansen.nl', 'Anne', 'supervisor', 'h', 1);
             INSERT INTO api_tokens (name, token_hash, created_at) VALUES ('website', 'th', 1);",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let brands = store.brands().await.unwrap();
    assert_eq!(brands.len(), 1);
    assert_eq!(brands[0].slug.as_str(), "bakkerij-jansen");
    let brand = brands[0].id;
    let (lead, _) = store
        .user_credentials("lead@jansen.nl")
        .await
        .unwrap()
        .unwrap();
    let (anne, _) = store
        .user_credentials("anne@jansen.nl")
        .await
        .unwrap()
        .unwrap();
    assert!(lead.owner, "an admin of before is an owner");
    assert!(!anne.owner);
    let roles = |m: Vec<balie_core::Membership>| -> Vec<(balie_core::BrandId, Role)> {
        m.into_iter().map(|m| (m.brand.id, m.role)).collect()
    };
    assert_eq!(
        roles(store.memberships(lead.id).await.unwrap()),
        [(brand, Role::Admin)]
    );
    assert_eq!(
        roles(store.memberships(anne.id).await.unwrap()),
        [(brand, Role::Supervisor)]
    );
    assert_eq!(store.api_token_brand("th").await.unwrap(), Some(brand));
    assert_eq!(
        store
            .inbox(brand, ConversationStatus::Open, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    store
        .update_customer(brand, CustomerId(1), "Anna J.", "")
        .await
        .expect("the customer is the brand's");
}
