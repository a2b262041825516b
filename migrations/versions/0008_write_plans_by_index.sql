-- The write function's plans read by index whatever the tables held when they were made:
-- migration 0007's allocator_write, with settings that rule out the plans of small tables and
-- the owner's allocation read by its key alone.
--
-- allocator_write plans each of its statements once per connection (migration 0007), and a plan
-- made while a table is small, or while its statistics say it is empty, is a plan for a small
-- table: a connection that made its plans then scanned allocation whole on every later write,
-- however many allocations there were by then. With 65,000 allocations a lone allocation cost
-- its backend 40 ms instead of under 1 ms.
CREATE OR REPLACE FUNCTION allocator_write(
    kinds       text[],   -- 'allocate', 'release' or 'release_owner'
    owners      text[],   -- the owner; for 'release' the guard (NULL: none)
    ips         inet[],   -- the user-requested IP, or the one released; NULL: dynamic
    range_names text[],   -- the range asked for, or NULL
    families    text[],   -- the family asked for, or NULL (then the IP's, the range's, IPv4)
    metadata    jsonb[],
    batch       text DEFAULT NULL,  -- 'atomic', 'each', or NULL: independent requests
    patient     boolean DEFAULT false  -- a batch run again: it may wait for blocks
) RETURNS SETOF allocator_outcome
LANGUAGE plpgsql VOLATILE
-- Each statement is planned once per connection. Left to choose, the plan cache kept planning
-- most of them again on every call (a custom plan for each set of values), which was a third of
-- the function's CPU; their plans do not depend on the values (key lookups and ordered index
-- scans of the range's blocks and the family's ranges).
SET plan_cache_mode = force_generic_plan
-- A plan made once is kept while the tables grow: it must be the plan of a large table even
-- when the statistics say the tables are empty. Every statement is a key lookup or an ordered
-- index scan, so the plans that only pay on small tables are ruled out: sequential scans where
-- an index serves, hash and merge joins. JIT is off: with sequential scans priced as ruled out,
-- the few lookups that have no index (the ranges of a family) cost more than JIT's threshold,
-- and compiling them took far longer than running them.
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET jit = off
AS $$
DECLARE
    ops constant integer := coalesce(array_length(kinds, 1), 0);
    -- Only a call of one operation may wait for a block: it holds no other. A batch cannot hand
    -- a request back, and two batches waiting for each other's blocks would deadlock: a batch
    -- that finds every free block held fails at once (40001) and runs again patient, after the
    -- batch lock, so that only one batch at a time waits while it holds blocks.
    alone constant boolean := ops = 1 OR patient;
    drafts allocator_draft[] := '{}';
    -- The events in order: event n of this call gets revision base + n.
    event_types text[] := '{}';
    event_helds allocator_held[] := '{}';
    -- Count changes, one entry per address taken (+1) or freed (-1), and whether it is static.
    delta_ranges integer[] := '{}';
    delta_counts integer[] := '{}';
    delta_static integer[] := '{}';
    delta_cooling integer[] := '{}';
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
    cooled cooling_address;
    reclaimed boolean;
    kept_range integer;
    kept_band smallint;
    kept_block bigint;
    kept_bit integer;
    kept_uses integer := 0;
    failures json;
    -- The ranges this call reads by address, shared against a change of their geometry.
    shared integer[] := '{}';
BEGIN
    IF patient THEN
        PERFORM pg_advisory_xact_lock(7245111);  -- the batch lock
    END IF;

    -- 1. The ranges of user-requested IPs and of released addresses, shared; their blocks,
    --    created where a lazy band lacks them, then locked in key order. The blocks are found
    --    again after the ranges are shared: a resize that ended meanwhile moved them.
    --    A call of dynamic allocations only addresses nothing here: it skips the two queries.
    IF cardinality(array_remove(ips, NULL)) > 0 OR 'release_owner' = ANY(kinds) THEN
        shared := allocator_share_ranges(kinds, owners, ips, range_names);
        FOR target IN
            WITH placed AS MATERIALIZED (
                SELECT rr, allocator_locate(rr, w.ip) AS p
                FROM allocator_addressed(kinds, owners, ips, range_names) w
                JOIN ip_range rr ON rr.id = w.range_id
            )
            SELECT DISTINCT (rr).id AS range_id, (p).band, (p).block_no,
                   allocator_eager(rr) AS eager,
                   allocator_block_bits(rr, (p).band, (p).block_no) AS nbits
            FROM placed
            WHERE p IS NOT NULL
            ORDER BY range_id, band, block_no
        LOOP
            PERFORM allocator_require_shared(target.range_id, shared);
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
    END IF;

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
                -- Read again under its shared lock (see migration 0006), here rather than
                -- through a set-returning function, which costs more than the reads.
                SELECT * INTO r FROM ip_range WHERE name = range_names[i];
                IF FOUND THEN
                    PERFORM allocator_share_range_lock(r.id);
                    SELECT * INTO r FROM ip_range WHERE id = r.id;
                END IF;
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

            -- An owner holds one address per family: a retry gets it back unchanged. The range's
            -- name is a subquery, not a join: a join by range would make a walk of the index by
            -- range an equal choice to the owner's key on a table whose statistics say empty.
            SELECT a.ip, a.family, (SELECT hr.name FROM ip_range hr WHERE hr.id = a.range_id),
                   a.owner, a.metadata, a.created_at,
                   nullif(a.revision, 0), made_events[array_position(made_ips, a.ip)]
            INTO h
            FROM allocation a
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

            -- A drained range serves no new allocation (the retry above still answers).
            IF named AND NOT r.allocatable THEN
                drafts := drafts || allocator_drained(r);
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
                    PERFORM allocator_require_shared(r.id, shared);
                    IF NOT r.allocatable THEN
                        drafts := drafts || allocator_drained(r);
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
                reclaimed := false;
                IF busy THEN
                    -- A set bit without an allocation is a cooling address (its block is
                    -- locked, so its cool-down cannot end meanwhile).
                    SELECT * INTO cooled FROM cooling_address c WHERE c.ip = ips[i];
                    IF NOT FOUND THEN
                        SELECT a.owner INTO after_name FROM allocation a WHERE a.ip = ips[i];
                        drafts := drafts || allocator_refusal(409, 'ip-already-allocated',
                            format('%s is already allocated to %L', host(ips[i]), after_name),
                            json_build_object('holder', after_name));
                        CONTINUE operation;
                    END IF;
                    IF cooled.available_at > now() AND cooled.released_by <> owners[i] THEN
                        drafts := drafts || allocator_refusal(409, 'ip-cooling-down',
                            format('%s was released by %L and cools down until %s',
                                   host(ips[i]), cooled.released_by,
                                   allocator_time(cooled.available_at)),
                            json_build_object('available_at', allocator_time(cooled.available_at),
                                              'released_by', cooled.released_by));
                        CONTINUE operation;
                    END IF;
                    -- Its releasing owner takes it back, or its cool-down is over: its bit
                    -- stays set, now for an allocation.
                    DELETE FROM cooling_address c WHERE c.ip = ips[i];
                    reclaimed := true;
                END IF;
            ELSE
                -- Dynamic: the dynamic band of every candidate range first, then the static
                -- band, so that user-requested IPs in it rarely collide.
                reclaimed := false;
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
                            -- The block this call took its last address of the band from is
                            -- its own already: a batch of 1000 locks a few dozen blocks, not
                            -- hundreds that concurrent writers then skip. A few times only:
                            -- each update of one row in a transaction lengthens its chain of
                            -- versions, which the next update walks.
                            kept_bit := NULL;
                            IF candidate.id = kept_range AND band = kept_band
                               AND kept_uses < 16 THEN
                                SELECT allocator_free_bit(b.bits,
                                           allocator_block_bits(candidate, kept_band, b.block_no),
                                           floor(random() * 4096)::integer)
                                INTO kept_bit
                                FROM bitmap_block b
                                WHERE b.range_id = kept_range
                                  AND b.band = kept_band
                                  AND b.block_no = kept_block
                                  AND b.free > 0;
                            END IF;
                            IF kept_bit >= 0 THEN
                                spot := ROW(kept_block, kept_bit, false)::allocator_spot;
                                kept_uses := kept_uses + 1;
                            ELSE
                                spot := allocator_pick(candidate, band::smallint, attempt = 2);
                                kept_uses := 0;
                            END IF;
                            busy := busy OR spot.busy;
                            IF spot.bit >= 0 THEN
                                r := candidate;
                                spot_band := band;
                                spot_block := spot.block_no;
                                spot_bit := spot.bit;
                                kept_range := r.id;
                                kept_band := spot_band;
                                kept_block := spot_block;
                                EXIT search;
                            END IF;
                        END LOOP;
                    END LOOP;
                    EXIT search WHEN NOT busy;
                    -- Every block with free bits is held by others: wait for one, alone.
                    IF NOT alone AND batch IS NOT NULL THEN
                        RAISE EXCEPTION 'the free blocks of % are held by other writers', fam
                            USING ERRCODE = 'serialization_failure';
                    END IF;
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

            -- Take the address: its bit (set already when it was cooling), its row, its count,
            -- its event.
            IF NOT reclaimed THEN
                UPDATE bitmap_block b
                SET bits = set_bit(b.bits, spot_bit, 1),
                    free = b.free - 1
                WHERE b.range_id = r.id
                  AND b.band = spot_band
                  AND b.block_no = spot_block;
            END IF;
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
            delta_cooling := delta_cooling || -reclaimed::integer;
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
                PERFORM allocator_require_shared(held.range_id, shared);
                IF kinds[i] = 'release' AND owners[i] IS NOT NULL AND held.owner <> owners[i] THEN
                    drafts := drafts || allocator_refusal(409, 'owner-mismatch',
                        format('%s is held by %L, not %L', host(held.ip), held.owner, owners[i]),
                        json_build_object('holder', held.owner));
                    CONTINUE operation;
                END IF;
                at := allocator_locate(held.rr, held.ip);
                DELETE FROM allocation a WHERE a.ip = held.ip;
                IF (held.rr).release_cooldown_seconds > 0 THEN
                    -- Its bit stays set while it cools down (allocator_end_cooldowns clears it).
                    INSERT INTO cooling_address (ip, range_id, released_by, released_at,
                                                 available_at)
                    VALUES (held.ip, held.range_id, held.owner, now(),
                            now() + make_interval(secs => (held.rr).release_cooldown_seconds));
                    delta_cooling := delta_cooling || 1;
                ELSE
                    UPDATE bitmap_block b
                    SET bits = set_bit(b.bits, at.bit, 0),
                        free = b.free + get_bit(b.bits, at.bit)
                    WHERE b.range_id = held.range_id
                      AND b.band = at.band
                      AND b.block_no = at.block_no;
                    delta_cooling := delta_cooling || 0;
                END IF;
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

    -- An atomic batch with a refused request stores nothing: failing the statement rolls back
    -- every bit and row set above, before any count, revision or event. The refusals travel in
    -- the error's detail, their allocations with the revisions they would have had.
    IF batch = 'atomic' AND EXISTS (SELECT 1 FROM unnest(drafts) AS o WHERE o.problem IS NOT NULL)
    THEN
        SELECT revision INTO base FROM log_head WHERE id = 1;
        SELECT json_agg(json_build_object(
                   'index', o.ordinality - 1,
                   'status', o.status,
                   'problem', o.problem,
                   'detail', o.detail,
                   'extension', allocator_extension(o.problem, o.extension, o.helds[1], base))
               ORDER BY o.ordinality)
        INTO failures
        FROM unnest(drafts) WITH ORDINALITY AS o
        WHERE o.problem IS NOT NULL;
        RAISE EXCEPTION 'the batch was refused'
            USING ERRCODE = 'ALB01', DETAIL = failures::text;
    END IF;

    -- 3. Counts in range id order, then the head bump, then the revisions and the events.
    IF array_length(event_types, 1) > 0 THEN
        FOR d IN
            SELECT c.range_id, sum(c.n) AS n, sum(c.s) AS s, sum(c.k) AS k
            FROM unnest(delta_ranges, delta_counts, delta_static, delta_cooling)
                 AS c(range_id, n, s, k)
            GROUP BY c.range_id
            ORDER BY c.range_id
        LOOP
            UPDATE ip_range
            SET allocated = allocated + d.n,
                static_allocated = static_allocated + d.s,
                cooling = cooling + d.k
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
           allocator_extension(o.problem, o.extension, o.helds[1], base),
           base + o.event,
           CASE WHEN o.problem IS NOT NULL OR o.status = 0 THEN NULL
                WHEN o.many THEN coalesce((SELECT json_agg(allocator_json(o.helds[k], base))
                                           FROM generate_subscripts(o.helds, 1) AS k), '[]'::json)
                ELSE allocator_json(o.helds[1], base) END
    FROM unnest(drafts) WITH ORDINALITY AS o
    ORDER BY o.ordinality;
    -- A batch answers with the head after it: one more row, of status -1.
    IF batch IS NOT NULL THEN
        IF head IS NULL THEN
            SELECT revision INTO head FROM log_head WHERE id = 1;
        END IF;
        RETURN QUERY SELECT -1, NULL::text, NULL::text, NULL::json, head, NULL::json;
    END IF;
END
$$;
