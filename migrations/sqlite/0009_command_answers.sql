-- Commands that answer (USSD, rejecting a call) carry their arguments to
-- the node driving the instance, and that node writes the answer back for
-- the node that asked (src/cluster/remote.rs).
ALTER TABLE commands ADD COLUMN args TEXT;
ALTER TABLE commands ADD COLUMN answer TEXT;
