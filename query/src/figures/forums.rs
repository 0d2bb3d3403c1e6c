//! The forums directory: the largest forums (public, unencrypted rooms) by members, without
//! any identifier, forums of fewer than k members left out.

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::prelude::SessionContext;

use super::ForumRank;
use super::definitions::Source;
use crate::error::QueryError;

/// The `limit` forums with the most members, from the session's `rooms` view over raw events.
pub async fn top_forums(
    ctx: &SessionContext,
    limit: usize,
    timezone: &str,
    min_users: u32,
) -> Result<Vec<ForumRank>, QueryError> {
    let sql = format!(
        "SELECT server, members, to_char({time}, '%Y-%m') AS created FROM rooms \
         WHERE kind = 'forum' AND members >= {min_users} ORDER BY members DESC, created_at LIMIT {limit}",
        time = Source::Rooms.time(timezone),
    );
    ranks(ctx, &sql).await
}

/// Runs a query of `(server, members, created)` rows into ranks.
pub(crate) async fn ranks(ctx: &SessionContext, sql: &str) -> Result<Vec<ForumRank>, QueryError> {
    let batches = ctx.sql(sql).await?.collect().await?;
    let mut ranks = Vec::new();
    for batch in batches {
        let server = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        let members = datafusion::arrow::compute::cast(batch.column(1), &DataType::Int64)?;
        let created = datafusion::arrow::compute::cast(batch.column(2), &DataType::Utf8)?;
        let (server, members, created) = (
            server.as_string::<i32>(),
            members.as_primitive::<Int64Type>(),
            created.as_string::<i32>(),
        );
        for row in 0..batch.num_rows() {
            ranks.push(ForumRank {
                rank: ranks.len() + 1,
                server: server.value(row).to_owned(),
                members: members.value(row),
                created: created.value(row).to_owned(),
            });
        }
    }
    Ok(ranks)
}
