//! The Synapse registration file of an mxpulse appservice (`mxpulse hooks registration`): a
//! non-exclusive interest in every local user and every room, ephemeral data on, no rate
//! limit, fresh random tokens.

/// A registration for one homeserver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub id: String,
    pub url: String,
    pub server_name: String,
    pub as_token: String,
    pub hs_token: String,
    pub sender_localpart: String,
}

#[derive(Debug, thiserror::Error)]
#[error("no randomness for the tokens: {0}")]
pub struct RandomnessError(String);

/// 32 random bytes as hex.
pub fn random_token() -> Result<String, RandomnessError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| RandomnessError(e.to_string()))?;
    Ok(hex::encode(bytes))
}

impl Registration {
    pub fn generate(server_name: &str, url: &str) -> Result<Self, RandomnessError> {
        Ok(Self {
            id: format!("mxpulse-{server_name}"),
            url: url.to_owned(),
            server_name: server_name.to_owned(),
            as_token: random_token()?,
            hs_token: random_token()?,
            sender_localpart: "mxpulse".into(),
        })
    }

    /// The YAML file Synapse lists in `app_service_config_files`.
    pub fn to_yaml(&self) -> String {
        let users = regex_escape(&self.server_name);
        format!(
            "# mxpulse appservice registration for {server}: add this file to Synapse's\n\
             # app_service_config_files. hs_token must equal the one in mxpulse's [[hooks.homeservers]].\n\
             id: \"{id}\"\n\
             url: \"{url}\"\n\
             as_token: \"{as_token}\"\n\
             hs_token: \"{hs_token}\"\n\
             sender_localpart: \"{sender}\"\n\
             namespaces:\n  users:\n    - exclusive: false\n      regex: '@.*:{users}'\n  rooms:\n    - exclusive: false\n      regex: '!.*'\n  aliases: []\n\
             rate_limited: false\n\
             receive_ephemeral: true\n\
             de.sorunome.msc2409.push_ephemeral: true\n",
            server = self.server_name,
            id = self.id,
            url = self.url,
            as_token = self.as_token,
            hs_token = self.hs_token,
            sender = self.sender_localpart,
        )
    }

    /// The matching entry of mxpulse's configuration file.
    pub fn to_config_toml(&self) -> String {
        format!(
            "[[hooks.homeservers]]\nserver_name = \"{}\"\nhs_token = \"{}\"\n# synapse_db = \"postgresql://synapse_ro@localhost/synapse\"\n",
            self.server_name, self.hs_token
        )
    }
}

/// Escapes the regex metacharacters of a server name (its dots, mostly).
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ_and_the_user_regex_is_escaped() {
        let a = Registration::generate("agent.tchap.gouv.fr", "http://hooks:9100").unwrap();
        let b = Registration::generate("agent.tchap.gouv.fr", "http://hooks:9100").unwrap();
        assert_ne!(a.hs_token, b.hs_token);
        assert_ne!(a.as_token, a.hs_token);
        assert_eq!(a.hs_token.len(), 64);
        let yaml = a.to_yaml();
        assert!(
            yaml.contains(r"regex: '@.*:agent\.tchap\.gouv\.fr'"),
            "{yaml}"
        );
        assert!(a.to_config_toml().contains(&a.hs_token));
    }
}
