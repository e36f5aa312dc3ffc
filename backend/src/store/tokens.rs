//! The API token: stored hashed, set from `--token` or made once, rotated, checked.

use super::*;

impl Store {
    /// Makes sure an API token exists: the configured one (stored hashed) replaces any other; with
    /// none configured, one is generated on first start. Returns a newly generated token, to be
    /// shown once.
    pub async fn ensure_token(&self, configured: Option<&str>) -> Result<Option<String>, StoreError> {
        Ok(match self.set_token(configured).await? {
            TokenChange::Generated(t) => Some(t),
            _ => None,
        })
    }

    /// Makes `configured` the one token (earlier ones are revoked), or with none keeps the stored
    /// tokens, generating one when there is none. A configured token that a rotation revoked is
    /// refused: a restart with an old `--token` must not undo `p2law token`.
    pub async fn set_token(&self, configured: Option<&str>) -> Result<TokenChange, StoreError> {
        if let Some(t) = configured {
            let mut tx = self.pool.begin().await?;
            if let Some(row) = sqlx::query(&sql(self.dialect, "SELECT revoked_at FROM revoked_tokens WHERE sha256 = ?")).bind(hash(t)).fetch_optional(&mut *tx).await? {
                return Err(StoreError::TokenRevoked { at: row.get(0) });
            }
            sqlx::query(&sql(self.dialect, &format!("INSERT INTO revoked_tokens (sha256, revoked_at) SELECT sha256, {{now}} FROM api_tokens WHERE sha256 != ? ON CONFLICT DO NOTHING"))).bind(hash(t)).execute(&mut *tx).await?;
            let replaced = sqlx::query(&sql(self.dialect, "DELETE FROM api_tokens WHERE sha256 != ?")).bind(hash(t)).execute(&mut *tx).await?.rows_affected();
            sqlx::query(&sql(self.dialect, &format!("INSERT INTO api_tokens (sha256, created_at) VALUES (?, {{now}}) ON CONFLICT DO NOTHING"))).bind(hash(t)).execute(&mut *tx).await?;
            tx.commit().await?;
            return Ok(if replaced > 0 { TokenChange::Replaced(replaced) } else { TokenChange::Kept });
        }
        let count: i64 = sqlx::query(&sql(self.dialect, "SELECT COUNT(*) FROM api_tokens")).fetch_one(&self.pool).await?.get(0);
        if count > 0 {
            return Ok(TokenChange::Kept);
        }
        let token = new_token()?;
        sqlx::query(&sql(self.dialect, &format!("INSERT INTO api_tokens (sha256, created_at) VALUES (?, {{now}})"))).bind(hash(&token)).execute(&self.pool).await?;
        Ok(TokenChange::Generated(token))
    }

    /// Replaces every token with a new one, returned once; the old ones are revoked for good.
    pub async fn rotate_token(&self) -> Result<String, StoreError> {
        let token = new_token()?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(&sql(self.dialect, &format!("INSERT INTO revoked_tokens (sha256, revoked_at) SELECT sha256, {{now}} FROM api_tokens WHERE true ON CONFLICT DO NOTHING"))).execute(&mut *tx).await?;
        sqlx::query(&sql(self.dialect, "DELETE FROM api_tokens")).execute(&mut *tx).await?;
        sqlx::query(&sql(self.dialect, &format!("INSERT INTO api_tokens (sha256, created_at) VALUES (?, {{now}})"))).bind(hash(&token)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(token)
    }

    pub async fn token_valid(&self, token: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query(&sql(self.dialect, "SELECT COUNT(*) FROM api_tokens WHERE sha256 = ?")).bind(hash(token)).fetch_one(&self.pool).await?.get(0);
        Ok(n > 0)
    }
}

fn hash(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

fn new_token() -> Result<String, StoreError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Entropy(e.to_string()))?;
    Ok(format!("p2l_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}
