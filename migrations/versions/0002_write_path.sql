-- The write path as functions of the database: every allocation and release reaches Postgres as
-- one call of allocator_write, which runs as its own transaction (one round trip). A call takes a
-- group of operations (arrays, one element each), applies them in order as if each ran alone,
-- and returns one outcome per operation; refusals are outcomes, not errors.
--
-- Lock order, the same in every writer, so writers never deadlock on one another:
--   1. the blocks of user-requested IPs and of releases, sorted, waiting for their holders;
--   2. blocks for dynamic allocations, FOR UPDATE SKIP LOCKED (never waiting while holding any);
--   3. the ranges' count rows, in id order;
--   4. the log head, last: held from the bump to commit, so revisions are dense and follow
--      commit order (see allocator.store.event_log).

-- Geometry kept where one indexed lookup finds a range with free addresses (no reading of every
-- range): its usable size, and how many of its allocations lie in the static band.
ALTER TABLE ip_range
    ADD COLUMN size numeric,
    ADD COLUMN static_allocated bigint NOT NULL DEFAULT 0;

UPDATE ip_range SET size = power(2::numeric, CASE family WHEN 'IPv4' THEN 32 ELSE 128 END
                                             - masklen(cidr))
                           - CASE family WHEN 'IPv4' THEN 2 ELSE 1 END;

-- The static band is one block (at most 256 bits): what it holds is what its block lacks.
UPDATE ip_range r SET static_allocated = r.static_size - b.free
FROM bitmap_block b
WHERE b.range_id = r.id
  AND b.band = 0
  AND b.block_no = 0;

ALTER TABLE ip_range
    ALTER COLUMN size SET NOT NULL,
    ADD CONSTRAINT ck_ip_range_static_allocated
        CHECK (static_allocated >= 0 AND static_allocated <= allocated);

-- The ranges a request naming none tries, in the order it tries them: first those whose dynamic
-- band has room, then those whose static band has.
CREATE INDEX ix_ip_range_dynamic_free ON ip_range (family, name)
    WHERE allocated - static_allocated < size - static_size;
CREATE INDEX ix_ip_range_static_free ON ip_range (family, name)
    WHERE static_allocated < static_size;


-- Offsets count from the network address (allocator.domain.range); NULL outside the network.
-- inet - inet is a bigint, too small for the far half of an IPv6 /64, so the far half is reached
-- in two steps of 2^62.
CREATE FUNCTION allocator_offset(ip inet, net cidr) RETURNS numeric
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN NOT net >>= ip THEN NULL
        WHEN family(net) = 4 OR masklen(net) > 65 THEN (ip - network(net))::numeric
        WHEN ip < network(net) + 4611686018427387904 + 4611686018427387904
            THEN (ip - network(net))::numeric
        ELSE 9223372036854775808
             + (ip - (network(net) + 4611686018427387904 + 4611686018427387904))
    END
$$;

CREATE FUNCTION allocator_address(net cidr, "offset" numeric) RETURNS inet
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT host(CASE
        WHEN "offset" < 9223372036854775808 THEN network(net) + "offset"::bigint
        ELSE network(net) + 4611686018427387904 + 4611686018427387904
             + ("offset" - 9223372036854775808)::bigint
    END)::inet
$$;

-- The first clear bit of a block at or after byte start / 8, wrapping around; -1 when none.
-- Bits beyond nbits (the padding of a short last block) are never offered. ltrim skips whole
-- bytes of set bits in C, so a nearly full block costs no more than an empty one.
CREATE FUNCTION allocator_free_bit(bits bytea, nbits integer, start integer) RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    nbytes constant integer := (nbits + 7) / 8;
    first_byte constant integer := (start / 8) % nbytes;
    span bytea;
    i integer;
    b integer;
BEGIN
    FOR pass IN 1..2 LOOP
        IF pass = 1 THEN
            span := substring(bits FROM first_byte + 1 FOR nbytes - first_byte);
            i := first_byte;
        ELSE
            span := substring(bits FROM 1 FOR first_byte);
            i := 0;
        END IF;
        i := i + length(span) - length(ltrim(span, '\xff'::bytea));
        IF i < (CASE pass WHEN 1 THEN nbytes ELSE first_byte END) THEN
            b := get_byte(bits, i);
            FOR k IN 0..7 LOOP
                IF b & (1 << k) = 0 THEN
                    -- A clear padding bit: only the last byte has them, nothing free after it.
                    EXIT WHEN i * 8 + k >= nbits;
                    RETURN i * 8 + k;
                END IF;
            END LOOP;
        END IF;
    END LOOP;
    RETURN -1;
END
$$;


-- An allocation on its way to the contract's JSON. revision is NULL for one made by the running
-- call, whose revision is known only after the head bump: it is base + event (see allocator_json).
CREATE TYPE allocator_held AS (
    ip         inet,
    family     text,
    range_name text,
    owner      text,
    metadata   jsonb,
    created_at timestamptz,
    revision   bigint,
    event      integer
);

CREATE FUNCTION allocator_time(moment timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT to_char(moment AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- The Allocation object of the HTTP contract.
CREATE FUNCTION allocator_json(h allocator_held, base bigint DEFAULT 0) RETURNS json
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT json_build_object(
        'ip', host(h.ip),
        'family', h.family,
        'range', h.range_name,
        'owner', h.owner,
        'metadata', h.metadata,
        'created_at', allocator_time(h.created_at),
        'revision', coalesce(h.revision, base + h.event))
$$;

-- The Range object of the HTTP contract.
CREATE FUNCTION range_json(r ip_range) RETURNS json
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT json_build_object(
        'name', r.name,
        'cidr', r.cidr::text,
        'family', r.family,
        'size', r.size,
        'allocated', r.allocated,
        'free', r.size - r.allocated,
        'static_band', json_build_object(
            'first', CASE WHEN r.static_size > 0 THEN host(network(r.cidr) + 1) END,
            'last', CASE WHEN r.static_size > 0 THEN host(network(r.cidr) + r.static_size) END,
            'size', r.static_size),
        'created_at', allocator_time(r.created_at),
        'revision', r.revision)
$$;


-- A band of a range: its first offset and its size (allocator.domain.band). Band 0 is the static
-- band, band 1 the dynamic band.
CREATE FUNCTION allocator_band_first(r ip_range, band smallint) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE band WHEN 0 THEN 1 ELSE 1 + r.static_size END::numeric
$$;

CREATE FUNCTION allocator_band_size(r ip_range, band smallint) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE band WHEN 0 THEN r.static_size ELSE r.size - r.static_size END
$$;

-- Ranges of at most 2^24 addresses have every block from creation; larger ones create a block
-- on first use (allocator.domain.range.EAGER_LIMIT).
CREATE FUNCTION allocator_eager(r ip_range) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE r.family WHEN 'IPv4' THEN 32 ELSE 128 END - masklen(r.cidr) <= 24
$$;

CREATE FUNCTION allocator_block_bits(r ip_range, band smallint, block_no bigint) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT least(4096, allocator_band_size(r, band) - block_no * 4096::numeric)::integer
$$;


-- Where a usable address lives: its band, block and bit (allocator.domain.range.ServiceRange.locate);
-- NULL for any other address.
CREATE TYPE allocator_place AS (band smallint, block_no bigint, bit integer);

CREATE FUNCTION allocator_locate(r ip_range, ip inet) RETURNS allocator_place
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN o.place BETWEEN 1 AND r.size THEN
        ROW(b.band,
            floor((o.place - allocator_band_first(r, b.band)) / 4096),
            (o.place - allocator_band_first(r, b.band)) % 4096)::allocator_place
    END
    FROM (SELECT allocator_offset(ip, r.cidr) AS place) AS o,
         LATERAL (SELECT CASE WHEN o.place <= r.static_size THEN 0 ELSE 1 END::smallint AS band) AS b
$$;

-- Whether a band of a range has a free address by its counts. allocator_next_range spells the
-- same conditions out, so that its queries match the partial indexes above.
CREATE FUNCTION allocator_band_room(r ip_range, band smallint) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE band
        WHEN 1 THEN r.allocated - r.static_allocated < r.size - r.static_size
        ELSE r.static_allocated < r.static_size
    END
$$;

-- The first range of a family after the one named "after" (by name) whose band has room: one
-- probe of a partial index, however many ranges there are and however full.
CREATE FUNCTION allocator_next_range(fam text, band smallint, after text) RETURNS ip_range
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r ip_range;
BEGIN
    IF band = 1 THEN
        SELECT * INTO r
        FROM ip_range c
        WHERE c.family = fam
          AND c.allocated - c.static_allocated < c.size - c.static_size
          AND c.name > coalesce(after, '')
        ORDER BY c.family, c.name
        LIMIT 1;
    ELSE
        SELECT * INTO r
        FROM ip_range c
        WHERE c.family = fam
          AND c.static_allocated < c.static_size
          AND c.name > coalesce(after, '')
        ORDER BY c.family, c.name
        LIMIT 1;
    END IF;
    RETURN r;
END
$$;

-- The stored form of a block of nbits free bits.
CREATE FUNCTION allocator_empty_block(nbits integer) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT decode(repeat('00', (nbits + 7) / 8), 'hex')
$$;


-- A free address of one band, its block locked: (block_no, bit); NULL when there is none. busy
-- says that blocks with free bits exist but other transactions hold them: the caller then waits
-- (wait) or hands the request back to be run alone, since a call that holds blocks must not wait
-- for more (two such could deadlock).
CREATE TYPE allocator_spot AS (block_no bigint, bit integer, busy boolean);

CREATE FUNCTION allocator_pick(r ip_range, band smallint, wait boolean) RETURNS allocator_spot
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    blocks constant bigint := ceil(allocator_band_size(r, band) / 4096);
    start constant bigint := floor(random() * blocks);
    picked bigint;
    bits bytea;
BEGIN
    IF blocks = 0 THEN
        RETURN (NULL::bigint, NULL::integer, false);
    END IF;
    -- From a random block on, wrapping: concurrent allocators spread over the blocks.
    SELECT b.block_no, b.bits INTO picked, bits
    FROM bitmap_block b
    WHERE b.range_id = r.id
      AND b.band = allocator_pick.band
      AND b.free > 0
      AND b.block_no >= start
    ORDER BY b.block_no
    LIMIT 1
    FOR UPDATE SKIP LOCKED;
    IF picked IS NULL THEN
        SELECT b.block_no, b.bits INTO picked, bits
        FROM bitmap_block b
        WHERE b.range_id = r.id
          AND b.band = allocator_pick.band
          AND b.free > 0
          AND b.block_no < start
        ORDER BY b.block_no
        LIMIT 1
        FOR UPDATE SKIP LOCKED;
    END IF;
    -- A lazy band is too large ever to be dense: a random block is almost always new.
    IF picked IS NULL AND NOT allocator_eager(r) THEN
        FOR probe IN 1..8 LOOP
            INSERT INTO bitmap_block (range_id, band, block_no, bits, free)
            SELECT r.id, allocator_pick.band, n.block_no,
                   allocator_empty_block(allocator_block_bits(r, allocator_pick.band, n.block_no)),
                   allocator_block_bits(r, allocator_pick.band, n.block_no)
            FROM (SELECT floor(random() * blocks)::bigint AS block_no) AS n
            ON CONFLICT DO NOTHING
            RETURNING bitmap_block.block_no, bitmap_block.bits INTO picked, bits;
            EXIT WHEN picked IS NOT NULL;
        END LOOP;
    END IF;
    IF picked IS NULL THEN
        IF NOT EXISTS (SELECT 1 FROM bitmap_block b
                       WHERE b.range_id = r.id AND b.band = allocator_pick.band AND b.free > 0) THEN
            RETURN (NULL::bigint, NULL::integer, false);
        END IF;
        IF NOT wait THEN
            RETURN (NULL::bigint, NULL::integer, true);
        END IF;
        SELECT b.block_no, b.bits INTO picked, bits
        FROM bitmap_block b
        WHERE b.range_id = r.id
          AND b.band = allocator_pick.band
          AND b.free > 0
        ORDER BY b.block_no
        LIMIT 1
        FOR UPDATE;
        IF picked IS NULL THEN
            RETURN (NULL::bigint, NULL::integer, false);
        END IF;
    END IF;
    RETURN (picked,
            allocator_free_bit(bits, allocator_block_bits(r, band, picked),
                               floor(random() * 4096)::integer),
            false);
END
$$;


-- One operation's answer, as allocator_write returns it. status is the HTTP status the request
-- gets alone (0: run it again alone, it must wait for a block); problem, detail and extension
-- describe a refusal; revision is that of the operation's first event; body is the allocation
-- (an array of them for a release of all of an owner's).
CREATE TYPE allocator_outcome AS (
    status    integer,
    problem   text,
    detail    text,
    extension json,
    revision  bigint,
    body      json
);

-- What an operation did, until the head bump gives its events their revisions.
CREATE TYPE allocator_draft AS (
    status    integer,
    problem   text,
    detail    text,
    extension json,
    event     integer,
    many      boolean,
    helds     allocator_held[]
);

CREATE FUNCTION allocator_refusal(status integer, problem text, detail text,
                                  extension json DEFAULT NULL) RETURNS allocator_draft
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ROW(status, problem, detail, extension, NULL, false, '{}')::allocator_draft
$$;


CREATE FUNCTION allocator_write(
    kinds       text[],   -- 'allocate', 'release' or 'release_owner'
    owners      text[],   -- the owner; for 'release' the guard (NULL: none)
    ips         inet[],   -- the user-requested IP, or the one released; NULL: dynamic
    range_names text[],   -- the range asked for, or NULL
    families    text[],   -- the family asked for, or NULL (then the IP's, the range's, IPv4)
    metadata    jsonb[]
) RETURNS SETOF allocator_outcome
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    ops constant integer := coalesce(array_length(kinds, 1), 0);
    -- Only a call of one operation may wait for a block: it holds no other.
    alone constant boolean := ops = 1;
    drafts allocator_draft[] := '{}';
    -- The events in order: event n of this call gets revision base + n.
    event_types text[] := '{}';
    event_helds allocator_held[] := '{}';
    -- Count changes, one entry per address taken (+1) or freed (-1), and whether it is static.
    delta_ranges integer[] := '{}';
    delta_counts integer[] := '{}';
    delta_static integer[] := '{}';
    -- Allocations made by this call, and their event numbers.
    made_ips inet[] := '{}';
    made_events integer[] := '{}';
    -- Owners with an operation handed back to run alone: their later operations go with it.
    deferred text[] := '{}';
    target record;
    r ip_range;
    candidate ip_range;
    h allocator_held;
    held record;
    spot allocator_spot;
    at allocator_place;
    fam text;
    named boolean;
    busy boolean;
    after_name text;
    place numeric;
    spot_band smallint;
    spot_block bigint;
    spot_bit integer;
    first_event integer;
    helds allocator_held[];
    head bigint;
    base bigint;
    d record;
BEGIN
    -- 1. The blocks of user-requested IPs and of released addresses, created where a lazy band
    --    lacks them, then locked in key order.
    FOR target IN
        WITH wanted AS (
            SELECT coalesce(named_range.id, containing.id) AS range_id, op.ip
            FROM unnest(kinds, ips, range_names) AS op(kind, ip, range_name)
            LEFT JOIN ip_range named_range ON named_range.name = op.range_name
            LEFT JOIN ip_range containing ON op.range_name IS NULL AND containing.cidr >>= op.ip
            WHERE op.kind = 'allocate'
              AND op.ip IS NOT NULL
            UNION ALL
            SELECT a.range_id, a.ip
            FROM unnest(kinds, ips) AS op(kind, ip)
            JOIN allocation a ON a.ip = op.ip
            WHERE op.kind = 'release'
            UNION ALL
            SELECT a.range_id, a.ip
            FROM unnest(kinds, owners) AS op(kind, owner)
            JOIN allocation a ON a.owner = op.owner
            WHERE op.kind = 'release_owner'
        ),
        placed AS (
            SELECT rr, allocator_locate(rr, w.ip) AS p
            FROM wanted w
            JOIN ip_range rr ON rr.id = w.range_id
        )
        SELECT DISTINCT (rr).id AS range_id, (p).band, (p).block_no,
               allocator_eager(rr) AS eager,
               allocator_block_bits(rr, (p).band, (p).block_no) AS nbits
        FROM placed
        WHERE p IS NOT NULL
        ORDER BY range_id, band, block_no
    LOOP
        IF NOT target.eager THEN
            INSERT INTO bitmap_block (range_id, band, block_no, bits, free)
            VALUES (target.range_id, target.band, target.block_no,
                    allocator_empty_block(target.nbits), target.nbits)
            ON CONFLICT DO NOTHING;
        END IF;
        PERFORM 1
        FROM bitmap_block b
        WHERE b.range_id = target.range_id
          AND b.band = target.band
          AND b.block_no = target.block_no
        FOR UPDATE;
    END LOOP;

    -- 2. Each operation in order, as if it ran alone.
    <<operation>>
    FOR i IN 1..ops LOOP
        helds := '{}';
        IF owners[i] = ANY(deferred) THEN
            drafts := drafts || allocator_refusal(0, NULL, NULL);
            CONTINUE operation;
        END IF;

        IF kinds[i] = 'allocate' THEN
            named := range_names[i] IS NOT NULL;
            r := NULL;
            IF named THEN
                SELECT * INTO r FROM ip_range WHERE name = range_names[i];
                IF NOT FOUND THEN
                    drafts := drafts || allocator_refusal(404, 'range-not-found',
                        format('no range named %L', range_names[i]));
                    CONTINUE operation;
                END IF;
            END IF;
            fam := coalesce(families[i],
                            CASE family(ips[i]) WHEN 4 THEN 'IPv4' WHEN 6 THEN 'IPv6' END,
                            r.family, 'IPv4');
            IF named AND r.family <> fam THEN
                drafts := drafts || allocator_refusal(422, 'invalid-request',
                    format('range %s is %s, but %s says %s', r.name, r.family,
                           CASE WHEN families[i] IS NOT NULL THEN 'family'
                                ELSE 'ip ' || host(ips[i]) END, fam),
                    json_build_object('field',
                        CASE WHEN families[i] IS NOT NULL THEN 'family' ELSE 'range' END));
                CONTINUE operation;
            END IF;

            -- An owner holds one address per family: a retry gets it back unchanged.
            SELECT a.ip, a.family, hr.name, a.owner, a.metadata, a.created_at,
                   nullif(a.revision, 0), made_events[array_position(made_ips, a.ip)]
            INTO h
            FROM allocation a
            JOIN ip_range hr ON hr.id = a.range_id
            WHERE a.owner = owners[i]
              AND a.family = fam;
            IF FOUND THEN
                IF ips[i] IS NULL OR ips[i] = h.ip THEN
                    drafts := drafts || ROW(200, NULL, NULL, NULL, NULL, false,
                                            ARRAY[h])::allocator_draft;
                ELSE
                    drafts := drafts || ROW(409, 'owner-has-allocation',
                        format('%L already holds %s in %s', owners[i], host(h.ip), fam),
                        NULL, NULL, false, ARRAY[h])::allocator_draft;
                END IF;
                CONTINUE operation;
            END IF;

            IF ips[i] IS NOT NULL THEN
                -- A user-requested IP: its block is locked (step 1).
                IF NOT named THEN
                    SELECT * INTO r FROM ip_range WHERE cidr >>= ips[i];
                    IF NOT FOUND THEN
                        drafts := drafts || allocator_refusal(422, 'ip-not-in-range',
                            format('%s is in no range', host(ips[i])));
                        CONTINUE operation;
                    END IF;
                ELSIF NOT r.cidr >>= ips[i] THEN
                    drafts := drafts || allocator_refusal(422, 'ip-not-in-range',
                        format('%s is not in range %s', host(ips[i]), r.cidr));
                    CONTINUE operation;
                END IF;
                place := allocator_offset(ips[i], r.cidr);
                IF place = 0 OR place > r.size THEN
                    drafts := drafts || allocator_refusal(422, 'ip-not-in-range',
                        format('%s is the %s address of %s and is never allocated', host(ips[i]),
                               CASE WHEN place = 0 THEN 'network' ELSE 'broadcast' END, r.cidr));
                    CONTINUE operation;
                END IF;
                at := allocator_locate(r, ips[i]);
                spot_band := at.band;
                spot_block := at.block_no;
                spot_bit := at.bit;
                SELECT get_bit(b.bits, spot_bit) INTO busy
                FROM bitmap_block b
                WHERE b.range_id = r.id
                  AND b.band = spot_band
                  AND b.block_no = spot_block;
                IF NOT FOUND THEN
                    -- The range was deleted while this call waited for the block: run again.
                    RAISE EXCEPTION 'range % changed during the call', r.name
                        USING ERRCODE = 'serialization_failure';
                END IF;
                IF busy THEN
                    SELECT a.owner INTO after_name FROM allocation a WHERE a.ip = ips[i];
                    drafts := drafts || allocator_refusal(409, 'ip-already-allocated',
                        format('%s is already allocated to %L', host(ips[i]), after_name),
                        json_build_object('holder', after_name));
                    CONTINUE operation;
                END IF;
            ELSE
                -- Dynamic: the dynamic band of every candidate range first, then the static
                -- band, so that user-requested IPs in it rarely collide.
                IF NOT named AND NOT EXISTS (SELECT 1 FROM ip_range WHERE family = fam) THEN
                    drafts := drafts || allocator_refusal(422, 'no-range-for-family',
                        format('there is no %s range', fam));
                    CONTINUE operation;
                END IF;
                spot_bit := NULL;
                busy := false;
                <<search>>
                FOR attempt IN 1..2 LOOP
                    FOR band IN REVERSE 1..0 LOOP
                        after_name := NULL;
                        LOOP
                            IF named THEN
                                EXIT WHEN after_name IS NOT NULL
                                          OR NOT allocator_band_room(r, band::smallint);
                                candidate := r;
                            ELSE
                                candidate := allocator_next_range(fam, band::smallint, after_name);
                                EXIT WHEN candidate.id IS NULL;
                            END IF;
                            after_name := candidate.name;
                            spot := allocator_pick(candidate, band::smallint, attempt = 2);
                            busy := busy OR spot.busy;
                            IF spot.bit >= 0 THEN
                                r := candidate;
                                spot_band := band;
                                spot_block := spot.block_no;
                                spot_bit := spot.bit;
                                EXIT search;
                            END IF;
                        END LOOP;
                    END LOOP;
                    EXIT search WHEN NOT busy;
                    -- Every block with free bits is held by others: wait for one, alone.
                    IF NOT alone THEN
                        deferred := deferred || owners[i];
                        drafts := drafts || allocator_refusal(0, NULL, NULL);
                        CONTINUE operation;
                    END IF;
                END LOOP;
                IF spot_bit IS NULL THEN
                    drafts := drafts || allocator_refusal(409, 'range-full',
                        CASE WHEN named THEN format('no free address in range %L', range_names[i])
                             ELSE format('no free address in any %s range', fam) END);
                    CONTINUE operation;
                END IF;
            END IF;

            -- Take the address: its bit, its row, its count, its event.
            UPDATE bitmap_block b
            SET bits = set_bit(b.bits, spot_bit, 1),
                free = b.free - 1
            WHERE b.range_id = r.id
              AND b.band = spot_band
              AND b.block_no = spot_block;
            event_types := event_types || 'ALLOCATED'::text;
            h := ROW(allocator_address(r.cidr, allocator_band_first(r, spot_band)
                                               + spot_block * 4096::numeric + spot_bit),
                     fam, r.name, owners[i], coalesce(metadata[i], '{}'), now(),
                     NULL, array_length(event_types, 1))::allocator_held;
            INSERT INTO allocation (ip, family, range_id, owner, metadata, created_at, revision)
            VALUES (h.ip, h.family, r.id, h.owner, h.metadata, h.created_at, 0);
            event_helds := event_helds || h;
            made_ips := made_ips || h.ip;
            made_events := made_events || h.event;
            delta_ranges := delta_ranges || r.id;
            delta_counts := delta_counts || 1;
            delta_static := delta_static || (1 - spot_band);
            drafts := drafts || ROW(201, NULL, NULL, NULL, h.event, false,
                                    ARRAY[h])::allocator_draft;

        ELSE
            -- A release by address (guarded by owner when one is named), or of all of an
            -- owner's allocations; their blocks are locked (step 1).
            first_event := NULL;
            FOR held IN
                SELECT a.ip, a.family, a.owner, a.metadata, a.created_at, a.range_id,
                       nullif(a.revision, 0) AS revision, hr AS rr
                FROM allocation a
                JOIN ip_range hr ON hr.id = a.range_id
                WHERE a.ip IN (SELECT ips[i] WHERE kinds[i] = 'release'
                               UNION ALL
                               SELECT o.ip FROM allocation o
                               WHERE kinds[i] = 'release_owner' AND o.owner = owners[i])
                ORDER BY a.ip
            LOOP
                IF kinds[i] = 'release' AND owners[i] IS NOT NULL AND held.owner <> owners[i] THEN
                    drafts := drafts || allocator_refusal(409, 'owner-mismatch',
                        format('%s is held by %L, not %L', host(held.ip), held.owner, owners[i]),
                        json_build_object('holder', held.owner));
                    CONTINUE operation;
                END IF;
                at := allocator_locate(held.rr, held.ip);
                DELETE FROM allocation a WHERE a.ip = held.ip;
                UPDATE bitmap_block b
                SET bits = set_bit(b.bits, at.bit, 0),
                    free = b.free + get_bit(b.bits, at.bit)
                WHERE b.range_id = held.range_id
                  AND b.band = at.band
                  AND b.block_no = at.block_no;
                event_types := event_types || 'RELEASED'::text;
                first_event := coalesce(first_event, array_length(event_types, 1));
                h := ROW(held.ip, held.family, (held.rr).name, held.owner, held.metadata,
                         held.created_at, held.revision,
                         made_events[array_position(made_ips, held.ip)])::allocator_held;
                event_helds := event_helds || h;
                helds := helds || h;
                delta_ranges := delta_ranges || held.range_id;
                delta_counts := delta_counts || -1;
                delta_static := delta_static || (at.band - 1);
            END LOOP;
            IF kinds[i] = 'release' AND first_event IS NULL THEN
                drafts := drafts || allocator_refusal(404, 'ip-not-allocated',
                    format('%s is not allocated', host(ips[i])));
            ELSE
                drafts := drafts || ROW(CASE kinds[i] WHEN 'release' THEN 204 ELSE 200 END,
                                        NULL, NULL, NULL, first_event,
                                        kinds[i] = 'release_owner', helds)::allocator_draft;
            END IF;
        END IF;
    END LOOP;

    -- 3. Counts in range id order, then the head bump, then the revisions and the events.
    IF array_length(event_types, 1) > 0 THEN
        FOR d IN
            SELECT c.range_id, sum(c.n) AS n, sum(c.s) AS s
            FROM unnest(delta_ranges, delta_counts, delta_static) AS c(range_id, n, s)
            GROUP BY c.range_id
            ORDER BY c.range_id
        LOOP
            UPDATE ip_range
            SET allocated = allocated + d.n,
                static_allocated = static_allocated + d.s
            WHERE id = d.range_id;
        END LOOP;

        UPDATE log_head
        SET revision = revision + array_length(event_types, 1)
        WHERE id = 1
        RETURNING revision INTO head;
        -- A wake-up hint for the tailers, delivered at commit (allocator.store.event_log).
        PERFORM pg_notify('allocator_events', head::text);
        base := head - array_length(event_types, 1);

        UPDATE allocation a
        SET revision = base + m.event
        FROM unnest(made_ips, made_events) AS m(ip, event)
        WHERE a.ip = m.ip;

        INSERT INTO event (revision, type, payload)
        SELECT base + n,
               event_types[n],
               json_build_object('type', event_types[n], 'revision', base + n,
                                 'allocation', allocator_json(event_helds[n], base))
        FROM generate_subscripts(event_types, 1) AS n;
    END IF;

    RETURN QUERY
    SELECT o.status, o.problem, o.detail,
           CASE WHEN o.problem = 'owner-has-allocation'
                THEN json_build_object('allocation', allocator_json(o.helds[1], base))
                ELSE o.extension END,
           base + o.event,
           CASE WHEN o.problem IS NOT NULL OR o.status = 0 THEN NULL
                WHEN o.many THEN coalesce((SELECT json_agg(allocator_json(o.helds[k], base))
                                           FROM generate_subscripts(o.helds, 1) AS k), '[]'::json)
                ELSE allocator_json(o.helds[1], base) END
    FROM unnest(drafts) WITH ORDINALITY AS o
    ORDER BY o.ordinality;
END
$$;
