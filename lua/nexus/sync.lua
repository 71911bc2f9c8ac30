-- nexus.sync: semaphore, oneshot, watch, broadcast, event (being written;
-- every field of this table becomes a field of nexus).
return {}
