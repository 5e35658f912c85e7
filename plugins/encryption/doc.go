// Package encryption is the encryption plugin (priority security): it
// provides store.CipherService ("encryption"), an AEAD (AES-256-GCM) keyed from files
// or environment variables, that log_consumer, the audit log and the history
// store use to encrypt records at rest, and optional TLS for the agent's
// HTTP listener from certificate and key files.
//
// Every ciphertext names the key that sealed it, so keys rotate without
// re-encrypting: add a key, make it active, reload; old records still open
// with the old key while it stays in the key ring.
//
//	svc, err := agent.Require[store.Cipher](ctx, h, store.CipherService)
//	sealed, err := svc.Seal(record, []byte("logs"))
package encryption
