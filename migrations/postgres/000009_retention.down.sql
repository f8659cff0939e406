DROP TABLE message_purges;
DROP TABLE chat_retention;
