-- Replicas keep projects as last read in memory (src/cache.rs). At commit, tell every
-- listener which project changed, so that none serves it as it was.
CREATE FUNCTION notify_project_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cwsm_project_changed', NEW.id);
    RETURN NULL;
END;
$$;
CREATE TRIGGER projects_changed AFTER INSERT OR UPDATE ON projects
    FOR EACH ROW EXECUTE FUNCTION notify_project_changed();
