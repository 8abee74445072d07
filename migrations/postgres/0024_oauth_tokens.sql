-- Refresh tokens of OAuth 2.0 accounts (`emailin oauth login`), sealed
-- with [oauth] key: nonce, then ChaCha20-Poly1305 ciphertext and tag; the
-- account name is the associated data, so a token opens only for its own.
CREATE TABLE oauth_tokens (
    account TEXT PRIMARY KEY,
    sealed BYTEA NOT NULL,
    updated_at BIGINT NOT NULL
);
