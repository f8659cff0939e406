DROP TABLE device_message_dedupe;
DROP TABLE device_messages;
DROP TABLE device_mailboxes;
DROP TABLE one_time_prekeys;
DROP TABLE device_keys;
