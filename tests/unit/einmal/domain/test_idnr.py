import pytest

from einmal.domain.idnr import InvalidIdNrError, check_digit, is_valid_idnr, validate_idnr


class TestValidateIdNr:
    @pytest.mark.parametrize(("value", "rule"), [
        ("86095742718", "check digit"),
        ("12345678903", "exactly one digit"),
        ("11223456785", "exactly one digit"),
        ("11123456786", "three times in a row"),
        ("8609574271", "exactly 11 digits"),
        ("860957427190", "exactly 11 digits"),
        ("8609574271a", "exactly 11 digits"),
        ("８６０９５７４２７１９", "exactly 11 digits"),  # noqa: RUF001 - full-width digits are not ASCII
        ("", "exactly 11 digits"),
    ])
    def test_rejects_invalid_numbers_naming_the_rule(self, value: str, rule: str) -> None:
        with pytest.raises(InvalidIdNrError, match=rule):
            validate_idnr(value)

    def test_rejects_leading_zero_outside_test_mode(self) -> None:
        body = "0123456789"[:9] + "1"  # "0123456781": digit 1 twice
        value = body + str(check_digit(body))
        with pytest.raises(InvalidIdNrError, match="start with 0"):
            validate_idnr(value)
        assert validate_idnr(value, allow_test=True) == value

    @pytest.mark.parametrize("value", ["86095742719", "47036892816", "65929970489",
                                       "57549285017", "25768131411"])
    def test_accepts_published_examples(self, value: str) -> None:
        assert validate_idnr(value) == value
        assert is_valid_idnr(value)

    def test_a_digit_three_times_but_not_consecutive_is_valid(self) -> None:
        body = "1213145678"  # "1" at places 1, 3 and 5
        assert body.count("1") == 3
        value = body + str(check_digit(body))
        assert is_valid_idnr(value)

    def test_check_digit_of_published_example(self) -> None:
        assert check_digit("8609574271") == 9
