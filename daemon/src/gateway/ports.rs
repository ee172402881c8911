//! The port range a gateway imposes (`--port-range LOWER..UPPER`): every
//! port the kernel listens on — its five channels and the communication
//! port — must fall inside it, so that a firewall or a pod's network
//! policy opened for the range lets the gateway in.
//!
//! As EG's own launchers do: `0..0` (or no range) means any free port; a
//! real range must span at least `EG_MIN_PORT_RANGE_SIZE` ports (default
//! 1000), and each port is found on its own: a taken one is retried with
//! another random candidate up to `EG_MAX_PORT_RANGE_RETRIES` times
//! (default 5; also read as `GP_…` and unprefixed).

use std::net::TcpListener;

use thiserror::Error;

/// Smallest range a gateway may impose unless `EG_MIN_PORT_RANGE_SIZE` says otherwise.
const DEFAULT_MIN_RANGE_SIZE: u32 = 1000;
/// Tries per port unless `EG_MAX_PORT_RANGE_RETRIES` says otherwise.
const DEFAULT_RETRIES: u32 = 5;

#[derive(Debug, Error, PartialEq)]
pub enum PortRangeError {
    #[error("the port range {0:?} is not LOWER..UPPER (two port numbers, e.g. 40000..41000)")]
    Malformed(String),
    #[error("the port range {range:?} spans {size} ports; the gateway requires at least {min} (EG_MIN_PORT_RANGE_SIZE); widen the range in the gateway's configuration")]
    TooSmall { range: String, size: u32, min: u32 },
    #[error("no free port in {lower}..{upper} after {tries} tries ({last}); widen the range or free ports in it")]
    Exhausted {
        lower: u16,
        upper: u16,
        tries: u32,
        last: String,
    },
    #[error("cannot listen on {ip}: {reason}")]
    Unbound { ip: String, reason: String },
}

/// Where the kernel may listen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PortRange {
    /// `None`: any port.
    bounds: Option<(u16, u16)>,
    /// Random candidates tried per port before giving up.
    tries: u32,
}

impl PortRange {
    /// Any free port.
    pub fn any() -> PortRange {
        PortRange {
            bounds: None,
            tries: DEFAULT_RETRIES + 1,
        }
    }

    /// Parses `LOWER..UPPER` with the gateway's minimum size and retries
    /// from the environment it exports to kernels (EG's `EG_` names, the
    /// `GP_` names of `gateway_provisioners`, or the bare ones its
    /// container images take).
    pub fn parse(text: &str) -> Result<PortRange, PortRangeError> {
        let min = env_number("MIN_PORT_RANGE_SIZE", DEFAULT_MIN_RANGE_SIZE);
        let retries = env_number("MAX_PORT_RANGE_RETRIES", DEFAULT_RETRIES);
        Self::parse_with(text, min, retries)
    }

    fn parse_with(text: &str, min: u32, retries: u32) -> Result<PortRange, PortRangeError> {
        let malformed = || PortRangeError::Malformed(text.to_owned());
        let (lower, upper) = text.trim().split_once("..").ok_or_else(malformed)?;
        let lower: u16 = lower.trim().parse().map_err(|_| malformed())?;
        let upper: u16 = upper.trim().parse().map_err(|_| malformed())?;
        if upper < lower {
            return Err(malformed());
        }
        let size = u32::from(upper - lower);
        let tries = retries + 1;
        if size == 0 {
            return Ok(PortRange {
                bounds: None,
                tries,
            });
        }
        if size < min {
            return Err(PortRangeError::TooSmall {
                range: text.to_owned(),
                size,
                min,
            });
        }
        Ok(PortRange {
            bounds: Some((lower, upper)),
            tries,
        })
    }

    /// The range, when one is imposed.
    #[cfg(test)]
    pub fn bounds(&self) -> Option<(u16, u16)> {
        self.bounds
    }

    /// How many random candidates to try per port.
    #[cfg(test)]
    pub fn tries(&self) -> u32 {
        self.tries
    }

    /// A port to try: random inside the range, 0 (the kernel's choice)
    /// without one.
    pub fn candidate(&self) -> u16 {
        match self.bounds {
            Some((lower, upper)) => rand::random_range(lower..=upper),
            None => 0,
        }
    }

    /// Binds a TCP listener on `ip` at a port of the range.
    pub fn listen(&self, ip: &str) -> Result<TcpListener, PortRangeError> {
        self.listen_avoiding(ip, &[])
    }

    /// Binds a listener at a port of the range other than `taken`, trying
    /// up to `tries` random candidates.
    fn listen_avoiding(&self, ip: &str, taken: &[u16]) -> Result<TcpListener, PortRangeError> {
        let mut last = String::new();
        for _ in 0..self.tries {
            let port = self.candidate();
            if port != 0 && taken.contains(&port) {
                last = format!("port {port} already chosen");
                continue;
            }
            match TcpListener::bind((ip, port)) {
                Ok(listener) => return Ok(listener),
                Err(e) => last = e.to_string(),
            }
        }
        Err(self.exhausted(ip, last))
    }

    /// `count` distinct free ports of the range on `ip`, each found with
    /// its own tries (as EG's launcher picks them). They are free when
    /// returned; whoever binds them next races everyone else for them.
    pub fn pick(&self, ip: &str, count: usize) -> Result<Vec<u16>, PortRangeError> {
        if self.bounds.is_none() {
            // The kernel's own bind takes any free port.
            return Ok(vec![0; count]);
        }
        // Held until all are chosen, so none is chosen twice.
        let mut held = Vec::with_capacity(count);
        let mut ports = Vec::with_capacity(count);
        for _ in 0..count {
            let listener = self.listen_avoiding(ip, &ports)?;
            let port = listener
                .local_addr()
                .map_err(|e| self.exhausted(ip, e.to_string()))?
                .port();
            ports.push(port);
            held.push(listener);
        }
        Ok(ports)
    }

    /// The error for a range in which nothing could be bound on `ip`.
    pub fn exhausted(&self, ip: &str, last: String) -> PortRangeError {
        match self.bounds {
            Some((lower, upper)) => PortRangeError::Exhausted {
                lower,
                upper,
                tries: self.tries,
                last,
            },
            None => PortRangeError::Unbound {
                ip: ip.to_owned(),
                reason: last,
            },
        }
    }

    /// Whether `port` is one this range allows.
    #[cfg(test)]
    pub fn contains(&self, port: u16) -> bool {
        self.bounds
            .is_none_or(|(lower, upper)| (lower..=upper).contains(&port))
    }
}

/// `NAME`, else `EG_NAME`, else `GP_NAME`, else `default`.
fn env_number(name: &str, default: u32) -> u32 {
    ["", "EG_", "GP_"]
        .iter()
        .find_map(|prefix| std::env::var(format!("{prefix}{name}")).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_lower_dot_dot_upper_and_zero_means_any_port() {
        assert_eq!(PortRange::any().pick("127.0.0.1", 5).unwrap(), [0; 5]);
        let range = PortRange::parse_with("40000..41000", 1000, 5).unwrap();
        assert_eq!(range.bounds(), Some((40000, 41000)));
        assert_eq!(range.tries(), 6);
        for _ in 0..100 {
            assert!(range.contains(range.candidate()));
        }
        let any = PortRange::parse_with("0..0", 1000, 5).unwrap();
        assert_eq!(any.bounds(), None);
        assert_eq!(any.candidate(), 0);
    }

    #[test]
    fn a_malformed_or_reversed_range_is_refused_with_an_example() {
        for bad in ["40000", "a..b", "41000..40000", "1..70000", ""] {
            let e = PortRange::parse_with(bad, 1000, 5).unwrap_err();
            assert!(matches!(e, PortRangeError::Malformed(_)), "{bad}: {e}");
            assert!(e.to_string().contains("40000..41000"), "{e}");
        }
    }

    #[test]
    fn a_range_smaller_than_the_gateways_minimum_is_refused() {
        let e = PortRange::parse_with("40000..40010", 1000, 5).unwrap_err();
        assert_eq!(
            e,
            PortRangeError::TooSmall {
                range: "40000..40010".into(),
                size: 10,
                min: 1000
            }
        );
        assert!(e.to_string().contains("EG_MIN_PORT_RANGE_SIZE"), "{e}");
        // The same range is fine where the gateway allows small ones.
        assert!(PortRange::parse_with("40000..40010", 10, 5).is_ok());
    }

    #[test]
    fn listening_in_a_full_range_names_the_range_after_its_retries() {
        // A one-port-wide range whose only ports are taken.
        let taken = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let taken_too = TcpListener::bind(("127.0.0.1", port + 1));
        if taken_too.is_err() {
            return; // someone else's port; the range below is not ours to fill
        }
        let range = PortRange::parse_with(&format!("{port}..{}", port + 1), 1, 3).unwrap();
        let e = range.listen("127.0.0.1").unwrap_err();
        assert!(
            matches!(e, PortRangeError::Exhausted { tries: 4, .. }),
            "{e}"
        );
        // The control: with both ports freed, the same range gives two
        // distinct ones (enough tries that both candidates come up).
        drop(taken);
        drop(taken_too);
        let range = PortRange::parse_with(&format!("{port}..{}", port + 1), 1, 200).unwrap();
        let mut ports = range.pick("127.0.0.1", 2).unwrap();
        ports.sort_unstable();
        assert_eq!(ports, [port, port + 1]);
    }
}
