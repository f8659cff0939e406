DROP TABLE attachment_usage;
DROP TABLE attachment_chats;
DROP TABLE attachments;
