//! `[notifications]`: the webhook approvers are told through.

use super::check::Ctx;
use super::raw::RawNotifications;
use super::{NotificationConfig, WebhookFormat};

pub(super) fn validate_notifications(
    ctx: &mut Ctx<'_>,
    raw: Option<&RawNotifications>,
) -> Option<NotificationConfig> {
    raw.as_ref().and_then(|n| {
        let url = n.webhook_url.get_ref();
        if !url.starts_with("https://") && !url.starts_with("http://") {
            ctx.report(
                &n.webhook_url,
                "notifications.webhook_url must be an http(s) URL",
            );
            return None;
        }
        let format = match n.format.as_ref().map(|f| (f, f.get_ref().as_str())) {
            None | Some((_, "json")) => WebhookFormat::Json,
            Some((_, "slack")) => WebhookFormat::Slack,
            Some((at, other)) => {
                ctx.report(
                    at,
                    format!("notifications.format `{other}` must be json or slack"),
                );
                return None;
            }
        };
        Some(NotificationConfig {
            webhook_url: url.clone(),
            format,
            secret_env: n.secret_env.as_ref().map(|s| s.get_ref().clone()),
        })
    })
}
