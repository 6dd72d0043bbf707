//! What airlock knows about the upstream server from its greeting: MariaDB
//! or MySQL, and the version number executable comments are compared with.

/// The upstream server's flavour and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub mariadb: bool,
    /// `major * 10000 + minor * 100 + patch`, as `MYSQL_VERSION_ID`; `None`
    /// when the version string could not be read (executable comments
    /// with a version are then refused).
    pub version_id: Option<u32>,
}

impl ServerInfo {
    /// From the greeting's version string, e.g. `8.0.36` or
    /// `5.5.5-10.11.19-MariaDB-0+deb12u1` (MariaDB's replication prefix).
    pub fn from_version(version: &str) -> ServerInfo {
        let mariadb = version.contains("MariaDB");
        let v = if mariadb {
            version.strip_prefix("5.5.5-").unwrap_or(version)
        } else {
            version
        };
        ServerInfo {
            mariadb,
            version_id: parse_id(v),
        }
    }
}

fn parse_id(v: &str) -> Option<u32> {
    let mut parts = v.splitn(3, '.');
    let num = |s: &str| -> Option<u32> {
        let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() || digits.len() > 3 {
            return None;
        }
        digits.parse().ok()
    };
    let major = num(parts.next()?)?;
    let minor = num(parts.next()?)?;
    let patch = num(parts.next()?)?;
    if minor > 99 || patch > 99 {
        return None;
    }
    Some(major * 10000 + minor * 100 + patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let m = ServerInfo::from_version("5.5.5-10.11.19-MariaDB-0+deb12u1");
        assert_eq!((m.mariadb, m.version_id), (true, Some(101119)));
        let m = ServerInfo::from_version("11.4.2-MariaDB");
        assert_eq!((m.mariadb, m.version_id), (true, Some(110402)));
        let m = ServerInfo::from_version("8.0.36");
        assert_eq!((m.mariadb, m.version_id), (false, Some(80036)));
        let m = ServerInfo::from_version("5.7.44-log");
        assert_eq!(m.version_id, Some(50744));
        assert_eq!(ServerInfo::from_version("garbage").version_id, None);
        assert_eq!(ServerInfo::from_version("8.x.1").version_id, None);
    }
}
