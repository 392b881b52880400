//! Who may connect and call: TLS for the listeners ([`tls`]: the certificate pair, reloaded on
//! change, and the acceptor every listener wraps its connections with), API keys ([`keys`]),
//! and the files both come from, watched for changes ([`credentials`]). Shared by the HTTP and
//! gRPC transports, below both; which route needs a key is [`crate::route`]'s to say.

pub mod credentials;
pub mod keys;
pub mod tls;
