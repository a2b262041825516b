-- allocator_locate as migration 0002 wrote it was a SQL function with a FROM clause: Postgres does not
-- inline such a function, and plans its query again on every call (measured: 0.6 to 0.85 ms per call,
-- twice per user-requested IP or release). As PL/pgSQL it keeps its plan: a few microseconds.
CREATE OR REPLACE FUNCTION allocator_locate(r ip_range, ip inet) RETURNS allocator_place
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    place constant numeric := allocator_offset(ip, r.cidr);
    band constant smallint := CASE WHEN place <= r.static_size THEN 0 ELSE 1 END;
    band_offset constant numeric := place - allocator_band_first(r, band);
BEGIN
    IF place IS NULL OR place < 1 OR place > r.size THEN
        RETURN NULL;
    END IF;
    RETURN ROW(band, floor(band_offset / 4096)::bigint, (band_offset % 4096)::integer)::allocator_place;
END
$$;
