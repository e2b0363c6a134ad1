-- The work queue (batches, items) and the certificate archive.
-- This schema is a public interface: other programs insert batches and items with plain
-- SQL and read certificates with plain SQL. Change it only with new migrations.

create table batches (
    id integer primary key,
    label text,
    -- Where the IDs came from: a file path, `<stdin>`, `<args>`, or anything an external
    -- producer wants to write (`sql` when left out).
    source text not null default 'sql',
    created_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

create table items (
    id integer primary key,
    batch_id integer not null references batches (id),
    -- As enqueued. The runner validates it before anything is sent and marks the row
    -- `rejected` when it is not a UUID.
    file_id text not null,
    state text not null default 'pending' check (
        state in ('pending', 'in_flight', 'deleted', 'already_gone', 'rejected', 'failed')
    ),
    attempts integer not null default 0,
    last_error text,
    -- The run holding the item while it is `in_flight`, and until when (database clock).
    -- A lease that has run out belongs to a dead run and may be taken over.
    lease_owner text,
    lease_until text,
    -- Set when the outcome of an earlier attempt is unknown (the process died, or the
    -- connection broke after the request was sent): look the file up before sending it.
    needs_lookup integer not null default 0,
    -- The certificate read with `GET /stored-files/{id}` before the file was sent, so that
    -- a crash between the service's answer and our commit cannot lose it.
    captured_cert text,
    captured_raw text,
    created_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished_at text
);

-- A file ID is queued at most once while it is not finished.
create unique index items_open_file_id on items (file_id)
where state in ('pending', 'in_flight', 'failed');

-- The runner claims open items in insertion order; with `state` in it, counting the
-- open items reads the index alone.
create index items_open on items (id, state)
where state in ('pending', 'in_flight', 'failed');

-- The items a run holds: lease renewal and release look them up by run.
create index items_leased on items (lease_owner)
where state = 'in_flight';

-- No index on (batch_id, state): every state change would move an entry in it, and
-- only `status` and `cancel` look items up by batch.

-- The archive. The tool never deletes from it.
create table certificates (
    file_id text primary key,
    cert text not null,
    deleted_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    batch_id integer references batches (id),
    -- The service's JSON entry for the file, as received.
    raw text not null,
    -- Null when all is well; otherwise what looked wrong (the certificate is kept as
    -- the service returned it).
    anomaly text
);

create index certificates_cert on certificates (cert);
