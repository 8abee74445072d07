-- Find stored messages by Message-ID across pipelines (bounces, load checks, operators).
CREATE INDEX messages_message_id ON messages (message_id);
