-- Tool calls: an assistant message keeps the tools the model called
-- (tool_calls, a JSON array of {id, type, function: {name, arguments}};
-- '' when none) and a tool message the call it answers (tool_call_id).

-- +goose Up
ALTER TABLE messages ADD COLUMN tool_calls text NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN tool_call_id text NOT NULL DEFAULT '';
ALTER TABLE messages DROP CONSTRAINT messages_role_check;
ALTER TABLE messages ADD CONSTRAINT messages_role_check CHECK (role IN ('system', 'user', 'assistant', 'tool'));

-- +goose Down
-- Tool messages cannot exist in the old schema: going down deletes them.
DELETE FROM messages WHERE role = 'tool';
ALTER TABLE messages DROP CONSTRAINT messages_role_check;
ALTER TABLE messages ADD CONSTRAINT messages_role_check CHECK (role IN ('system', 'user', 'assistant'));
ALTER TABLE messages DROP COLUMN tool_call_id;
ALTER TABLE messages DROP COLUMN tool_calls;
