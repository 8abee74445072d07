-- Sender authentication: each alias's policy, and the verdict (an
-- Authentication-Results value) stored with the raw message it concerns.
ALTER TABLE aliases ADD COLUMN auth_policy TEXT NOT NULL DEFAULT 'monitor'
    CHECK (auth_policy IN ('off', 'monitor', 'enforce'));
ALTER TABLE inbound ADD COLUMN auth_results TEXT;
