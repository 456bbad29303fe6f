-- Schema version 11: integrity tags. An HSM-computed tag (AES-GCM under the system key)
-- binds each key version's sealed material to its key, version, backend and public key, and
-- each set of import parameters to its token and key, so a blob the root key sealed cannot be
-- inserted or moved by writing to this file. Versions from before this schema are tagged once
-- at the next start; import parameters from before it are refused (they expire within a day:
-- call GetParametersForImport again).
ALTER TABLE key_versions ADD COLUMN tag BLOB NOT NULL DEFAULT x'';
ALTER TABLE import_params ADD COLUMN tag BLOB NOT NULL DEFAULT x'';
