DROP TABLE group_invites;
DROP TABLE direct_requests;
DROP TABLE privacy;
DROP TABLE blocks;
