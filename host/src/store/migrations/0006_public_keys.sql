-- Schema version 6: asymmetric key versions keep their public key (DER SubjectPublicKeyInfo)
-- next to the sealed private key; symmetric versions leave it empty.
ALTER TABLE key_versions ADD COLUMN public_key BLOB NOT NULL DEFAULT x'';
