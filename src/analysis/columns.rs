//! The column names people's tables use, one vocabulary for logs and rules alike.
//!
//! A header is compared without case, spaces, dots, dashes or underscores, so `Src IP`,
//! `src_ip`, `SrcIP` and `Source IP` are one column. A column is known or it is named in
//! an error (rules) or a warning (logs): never read as `any` by accident.

/// What a column of a pasted log or rules table holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Column {
    Time,
    Source,
    Destination,
    /// The destination port of a log row.
    Port,
    /// The ports a rule covers.
    Ports,
    Protocol,
    Action,
    Rule,
    /// Free text: a log's message or reason.
    Message,
    User,
    Id,
    Priority,
    Direction,
    /// Read by nobody, known to be harmless: byte counts, countries, interfaces.
    Ignored,
}

/// Every name, normalised, and what it means. Rule tables read `id`/`rule id` as the
/// rule's id; log tables read `rule`/`rule id` as the rule that matched.
const NAMES: &[(&str, Column)] = &[
    ("time", Column::Time),
    ("timestamp", Column::Time),
    ("date", Column::Time),
    ("datetime", Column::Time),
    ("start", Column::Time),
    ("eventtime", Column::Time),
    ("source", Column::Source),
    ("src", Column::Source),
    ("srcip", Column::Source),
    ("srcaddr", Column::Source),
    ("srcaddress", Column::Source),
    ("sourceip", Column::Source),
    ("sourceaddress", Column::Source),
    ("sourcecidr", Column::Source),
    ("sourceiprange", Column::Source),
    ("from", Column::Source),
    ("clientip", Column::Source),
    ("remoteip", Column::Source),
    ("destination", Column::Destination),
    ("dst", Column::Destination),
    ("dest", Column::Destination),
    ("dstip", Column::Destination),
    ("dstaddr", Column::Destination),
    ("dstaddress", Column::Destination),
    ("destip", Column::Destination),
    ("destinationip", Column::Destination),
    ("destinationaddress", Column::Destination),
    ("destinationcidr", Column::Destination),
    ("to", Column::Destination),
    ("target", Column::Destination),
    ("serverip", Column::Destination),
    ("port", Column::Port),
    ("dstport", Column::Port),
    ("destport", Column::Port),
    ("destinationport", Column::Port),
    ("dport", Column::Port),
    ("ports", Column::Ports),
    ("portrange", Column::Ports),
    ("portranges", Column::Ports),
    ("destinationports", Column::Ports),
    ("dstports", Column::Ports),
    ("protocol", Column::Protocol),
    ("proto", Column::Protocol),
    ("service", Column::Protocol),
    ("action", Column::Action),
    ("decision", Column::Action),
    ("verdict", Column::Action),
    ("result", Column::Action),
    ("disposition", Column::Action),
    ("rule", Column::Rule),
    ("ruleid", Column::Rule),
    ("rulename", Column::Rule),
    ("matchedrule", Column::Rule),
    ("policy", Column::Rule),
    ("message", Column::Message),
    ("msg", Column::Message),
    ("reason", Column::Message),
    ("event", Column::Message),
    ("description", Column::Message),
    ("details", Column::Message),
    ("comment", Column::Message),
    ("note", Column::Message),
    ("user", Column::User),
    ("username", Column::User),
    ("account", Column::User),
    ("principal", Column::User),
    ("id", Column::Id),
    ("name", Column::Id),
    ("priority", Column::Priority),
    ("order", Column::Priority),
    ("rulenumber", Column::Priority),
    ("number", Column::Priority),
    ("seq", Column::Priority),
    ("sequence", Column::Priority),
    ("direction", Column::Direction),
    ("type", Column::Ignored),
    ("ipversion", Column::Ignored),
    ("securitygroupruleid", Column::Id),
    ("flowdirection", Column::Direction),
    ("bytes", Column::Ignored),
    ("packets", Column::Ignored),
    ("srcport", Column::Ignored),
    ("sourceport", Column::Ignored),
    ("sport", Column::Ignored),
    ("country", Column::Ignored),
    ("interface", Column::Ignored),
    ("interfaceid", Column::Ignored),
    ("zone", Column::Ignored),
    ("severity", Column::Ignored),
    ("count", Column::Ignored),
    ("duration", Column::Ignored),
    ("host", Column::Ignored),
    ("hostname", Column::Ignored),
    ("application", Column::Ignored),
    ("app", Column::Ignored),
    ("logstatus", Column::Ignored),
    ("version", Column::Ignored),
    ("accountid", Column::Ignored),
    ("end", Column::Ignored),
    ("tags", Column::Ignored),
];

/// A header as compared: lower case, without spaces, dots, dashes or underscores.
pub fn normal(header: &str) -> String {
    header.chars().filter(|c| !matches!(c, ' ' | '.' | '-' | '_' | '\t')).flat_map(char::to_lowercase).collect()
}

/// The column a header names, for a log (`rules: false`) or a rules table. In a rules
/// table `Rule ID` is the rule's own id; in a log it names the rule that matched.
pub fn column(header: &str, rules: bool) -> Option<Column> {
    let n = normal(header);
    let c = NAMES.iter().find(|(name, _)| *name == n).map(|(_, c)| *c)?;
    Some(match (c, rules) {
        (Column::Rule, true) => Column::Id,
        (Column::Port, true) => Column::Ports,
        (Column::Ports, false) => Column::Port,
        (other, _) => other,
    })
}

/// The headers a table of this kind may use, for an error message.
pub fn known(rules: bool) -> String {
    let mut by: std::collections::BTreeMap<Column, Vec<&str>> = std::collections::BTreeMap::new();
    for (name, _) in NAMES {
        if let Some(c) = column(name, rules) {
            by.entry(c).or_default().push(name);
        }
    }
    by.into_iter().filter(|(c, _)| *c != Column::Ignored).map(|(_, names)| names[0]).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_people_use_are_one_column_whatever_their_case_and_spacing() {
        for h in ["Source IP", "src", "SRC_IP", "Src IP", "source", "srcaddr", "Source"] {
            assert_eq!(column(h, false), Some(Column::Source), "{h}");
            assert_eq!(column(h, true), Some(Column::Source), "{h}");
        }
        for h in ["Destination IP", "dst", "Dst IP", "dstaddr"] {
            assert_eq!(column(h, true), Some(Column::Destination), "{h}");
        }
        assert_eq!(column("Dst Port", false), Some(Column::Port));
        assert_eq!(column("Port Range", true), Some(Column::Ports));
        assert_eq!(column("Result", false), Some(Column::Action));
        assert_eq!(column("Decision", true), Some(Column::Action));
        assert_eq!(column("Rule ID", true), Some(Column::Id));
        assert_eq!(column("Rule ID", false), Some(Column::Rule));
        assert_eq!(column("Reason", false), Some(Column::Message));
        assert_eq!(column("Colour", false), None);
        assert!(known(true).contains("source"));
    }
}
