-- Schema version 7: bring-your-own-key. EXTERNAL keys remember their material's check value
-- (computed in the HSM) so only identical material can be imported again, and when it expires.
ALTER TABLE keys ADD COLUMN valid_to INTEGER NOT NULL DEFAULT 0;
ALTER TABLE keys ADD COLUMN material_kcv BLOB NOT NULL DEFAULT x'';

-- GetParametersForImport: a wrapping key pair (private half sealed by the HSM) per token.
CREATE TABLE import_params (
    token              TEXT PRIMARY KEY,
    key_id             TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
    wrapping_algorithm TEXT NOT NULL,
    sealed_private     BLOB NOT NULL,
    public_key         BLOB NOT NULL,
    valid_to           INTEGER NOT NULL
) STRICT;
