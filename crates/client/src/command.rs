//! What a line typed by the user means. Pure: no I/O, so every command is unit-tested.

/// One line of input, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Plain text: a message to the current room.
    Say(String),
    Join(String),
    Leave,
    Nick(String),
    Who,
    History,
    Rooms,
    Msg {
        to: String,
        text: String,
    },
    Help,
    Quit,
}

/// The help text `/help` shows.
pub const HELP: &str = "commands: /join ROOM, /leave, /nick NAME, /who, /history, /rooms, /msg NAME TEXT, /quit \
                        (a line starting with // sends the rest literally, starting with /)";

/// Decodes a line. `Ok(None)` for a blank line; `Err` says, for the user, what is wrong.
pub fn parse_line(line: &str) -> Result<Option<Command>, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(None);
    }
    // `//text` sends `/text`: the way to say something that starts with a slash.
    if let Some(literal) = line.strip_prefix("//") {
        return Ok(Some(Command::Say(format!("/{literal}"))));
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(Some(Command::Say(line.to_string())));
    };
    let (name, arg) = match rest.split_once(char::is_whitespace) {
        Some((n, a)) => (n, a.trim()),
        None => (rest, ""),
    };
    let required = |what: &str| {
        if arg.is_empty() { Err(format!("/{name} needs {what}")) } else { Ok(arg.to_string()) }
    };
    let no_argument = |cmd: Command| {
        if arg.is_empty() { Ok(cmd) } else { Err(format!("/{name} takes no argument")) }
    };
    let command = match name {
        "join" => Command::Join(required("a room name")?),
        "leave" => no_argument(Command::Leave)?,
        "nick" => Command::Nick(required("a name")?),
        "who" => no_argument(Command::Who)?,
        "history" => no_argument(Command::History)?,
        "rooms" => no_argument(Command::Rooms)?,
        "msg" => {
            let (to, text) = arg.split_once(char::is_whitespace).ok_or("usage: /msg NAME TEXT")?;
            let text = text.trim_start();
            if text.is_empty() {
                return Err("usage: /msg NAME TEXT".into());
            }
            Command::Msg { to: to.to_string(), text: text.to_string() }
        }
        "help" | "?" => Command::Help,
        "quit" | "exit" => Command::Quit,
        other => return Err(format!("unknown command /{other} (try /help)")),
    };
    Ok(Some(command))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_commands() {
        assert_eq!(parse_line("hello there\n"), Ok(Some(Command::Say("hello there".into()))));
        assert_eq!(parse_line("   "), Ok(None));
        assert_eq!(parse_line("/join ops"), Ok(Some(Command::Join("ops".into()))));
        assert_eq!(parse_line("/leave"), Ok(Some(Command::Leave)));
        assert_eq!(parse_line("/nick  bob "), Ok(Some(Command::Nick("bob".into()))));
        assert_eq!(parse_line("/who"), Ok(Some(Command::Who)));
        assert_eq!(parse_line("/history"), Ok(Some(Command::History)));
        assert_eq!(parse_line("/rooms"), Ok(Some(Command::Rooms)));
        assert_eq!(parse_line("/quit"), Ok(Some(Command::Quit)));
        assert_eq!(
            parse_line("/msg bob  hi  there"),
            Ok(Some(Command::Msg { to: "bob".into(), text: "hi  there".into() }))
        );
        assert_eq!(parse_line("//shrug"), Ok(Some(Command::Say("/shrug".into()))));
    }

    #[test]
    fn mistakes_are_explained() {
        assert!(parse_line("/join").unwrap_err().contains("room"));
        assert!(parse_line("/msg bob").unwrap_err().contains("usage"));
        assert!(parse_line("/who ops").unwrap_err().contains("no argument"));
        assert!(parse_line("/fly").unwrap_err().contains("unknown command /fly"));
    }
}
