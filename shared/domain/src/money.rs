//! Prices as shoppers read them: `1 990 ₽` in Russian, `₽1,990` in English.

/// The symbol of a currency, where it has a common one.
fn symbol(currency: &str) -> Option<&'static str> {
    Some(match currency {
        "RUB" => "₽",
        "USD" => "$",
        "EUR" => "€",
        "GBP" => "£",
        "KZT" => "₸",
        "UAH" => "₴",
        "BYN" => "Br",
        "INR" => "₹",
        _ => return None,
    })
}

/// Formats an amount in major units (roubles, dollars) for a locale: grouped thousands, decimals
/// only when there are kopecks or cents, the currency where the locale puts it.
pub fn format_money(amount: f64, currency: &str, locale: &str) -> String {
    let negative = amount < 0.0;
    let cents = (amount.abs() * 100.0).round() as u128;
    let (whole, fraction) = (cents / 100, cents % 100);
    let russian_style =
        matches!(locale.split(['-', '_']).next().unwrap_or(""), "ru" | "uk" | "be" | "kk" | "fr" | "de");
    let (group, decimal) = if russian_style { ('\u{a0}', ',') } else { (',', '.') };
    let digits = whole.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(group);
        }
        grouped.push(c);
    }
    if fraction > 0 {
        grouped.push(decimal);
        grouped.push_str(&format!("{fraction:02}"));
    }
    let sign = if negative { "-" } else { "" };
    match (symbol(currency), russian_style) {
        (Some(symbol), true) => format!("{sign}{grouped}\u{a0}{symbol}"),
        (Some(symbol), false) => format!("{sign}{symbol}{grouped}"),
        (None, _) => format!("{sign}{grouped}\u{a0}{currency}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_for_the_shoppers_locale() {
        assert_eq!(format_money(1990.0, "RUB", "ru"), "1\u{a0}990\u{a0}₽");
        assert_eq!(format_money(1_234_567.5, "RUB", "ru-RU"), "1\u{a0}234\u{a0}567,50\u{a0}₽");
        assert_eq!(format_money(1990.0, "RUB", "en"), "₽1,990");
        assert_eq!(format_money(19.99, "USD", "en-US"), "$19.99");
        assert_eq!(format_money(500.0, "CHF", "en"), "500\u{a0}CHF");
        assert_eq!(format_money(0.0, "EUR", "de"), "0\u{a0}€");
    }
}
