//! Platform webhook deliveries signed as each platform signs them (Meta
//! `X-Hub-Signature-256`, X `x-twitter-webhooks-signature`, Telegram
//! `X-Telegram-Bot-Api-Secret-Token`): shared by the demo's simulator and
//! `balie bench ingest`.

use serde_json::Value;

/// The webhook secrets a sender signs with (the channels are configured with the same).
#[derive(Clone)]
pub struct WebhookSecrets {
    pub app_secret: String,
    pub consumer_secret: String,
    pub telegram_secret: String,
}

/// Which webhook a delivery goes to, and its body.
pub enum Delivery {
    Meta(Value),
    X(Value),
    Telegram(Value),
}

/// A delivery ready to POST: the path under the server's base URL, the signature header and
/// the exact body bytes it was computed over.
pub struct SignedDelivery {
    pub path: String,
    pub header: (&'static str, String),
    pub body: Vec<u8>,
}

impl Delivery {
    /// Serialises and signs the delivery for the webhooks of the channels named `meta`, `x`
    /// and `telegram`.
    pub fn sign(
        &self,
        secrets: &WebhookSecrets,
        meta: &str,
        x: &str,
        telegram: &str,
    ) -> SignedDelivery {
        match self {
            Delivery::Meta(body) => {
                let body = body.to_string().into_bytes();
                SignedDelivery {
                    path: format!("/webhooks/meta/{meta}"),
                    header: (
                        "x-hub-signature-256",
                        balie_channels::signature::sha256_header(
                            secrets.app_secret.as_bytes(),
                            &body,
                        ),
                    ),
                    body,
                }
            }
            Delivery::X(body) => {
                let body = body.to_string().into_bytes();
                SignedDelivery {
                    path: format!("/webhooks/x/{x}"),
                    header: (
                        "x-twitter-webhooks-signature",
                        balie_channels::x::signature_header(&secrets.consumer_secret, &body),
                    ),
                    body,
                }
            }
            Delivery::Telegram(body) => SignedDelivery {
                path: format!("/webhooks/telegram/{telegram}"),
                header: (
                    "x-telegram-bot-api-secret-token",
                    secrets.telegram_secret.clone(),
                ),
                body: body.to_string().into_bytes(),
            },
        }
    }
}
