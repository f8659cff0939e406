DROP TABLE privacy;
DROP TABLE blocks;
