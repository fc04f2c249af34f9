//! The metadata tables, created when a gateway starts (under an advisory lock, so several
//! gateways starting at once do not race).
//!
//! Every byte a node holds is accounted for by exactly one row: a copy of a part of a file
//! (`parts`, for files being written or committed), a move's destination (`moves`), or
//! garbage waiting for its cleanup job (`garbage`). Copy ids come from one sequence and are
//! never reused, so a late cleanup can never remove a newer copy. The per-node counters
//! follow the rows in the same transactions:
//! * `stored`: bytes of committed parts on the node;
//! * `reserved`: bytes of parts being written and of move destinations;
//! * `garbage`: bytes of garbage rows on the node (still on its disk until their job ran).
//!
//! Nodes are never removed (`state` is always `active`); whether a node is up is each
//! gateway's own view, from the node's heartbeats ([`crate::health`]).

/// Advisory-lock key for schema creation.
pub const SCHEMA_LOCK: i64 = 0x7061_7274_7300_0001;
/// Advisory-lock key every metadata write takes (see [`super::Meta`]).
pub const WRITE_LOCK: i64 = 0x7061_7274_7300_0002;
/// Advisory-lock key the rebalancer holds while it runs (one per cluster).
pub const REBALANCER_LOCK: i64 = 0x7061_7274_7300_0003;

/// The DDL, idempotent.
pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS nodes (
    id            text PRIMARY KEY,
    addr          text NOT NULL,
    capacity      bigint NOT NULL CHECK (capacity > 0),
    stored        bigint NOT NULL DEFAULT 0,
    reserved      bigint NOT NULL DEFAULT 0,
    garbage       bigint NOT NULL DEFAULT 0,
    state         text NOT NULL DEFAULT 'active' CHECK (state IN ('active')),
    registered_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS files (
    id           bigserial PRIMARY KEY,
    name         text COLLATE "C" NOT NULL,
    size         bigint NOT NULL CHECK (size >= 0),
    state        text NOT NULL CHECK (state IN ('writing', 'committed')),
    checksum     text,
    gateway      text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    committed_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS files_committed_name ON files (name) WHERE state = 'committed';
CREATE INDEX IF NOT EXISTS files_writing ON files (gateway) WHERE state = 'writing';
CREATE SEQUENCE IF NOT EXISTS copy_ids;
CREATE TABLE IF NOT EXISTS parts (
    file_id bigint NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    idx     smallint NOT NULL CHECK (idx BETWEEN 0 AND 5),
    node    text NOT NULL REFERENCES nodes (id),
    copy    bigint NOT NULL UNIQUE,
    len     bigint NOT NULL CHECK (len >= 0),
    crc     bigint,
    blocks  bytea,
    PRIMARY KEY (file_id, idx)
);
CREATE INDEX IF NOT EXISTS parts_node ON parts (node);
CREATE TABLE IF NOT EXISTS garbage (
    copy       bigint PRIMARY KEY,
    node       text NOT NULL REFERENCES nodes (id),
    len        bigint NOT NULL,
    reason     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts   int NOT NULL DEFAULT 0,
    last_error text,
    dead       boolean NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS buckets (
    name       text COLLATE "C" PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS moves (
    copy       bigint PRIMARY KEY,
    file_id    bigint NOT NULL,
    idx        smallint NOT NULL,
    src_copy   bigint NOT NULL,
    src_node   text NOT NULL,
    dst_node   text NOT NULL,
    len        bigint NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
);
"#;
