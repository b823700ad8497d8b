"""Segmentation in every script: words for counts and shingles, terms for story vectors."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.stories.features import cosine, rarity, term_vector
from pipelines.words import pairs, terms, words


@pytest.mark.parametrize("text, expected", [
    ("Meta's $14.3bn deal — done.", ["Meta's", "$14.3bn", "deal", "—", "done."]),  # spaced: split at spaces
    ("दिल्ली सरकार ने घोषणा की।", ["दिल्ली", "सरकार", "ने", "घोषणा", "की।"]),  # vowel signs stay in their words
    ("北京市今天宣布了新的交通政策。", ["北京市", "今天", "宣布", "了", "新的", "交通", "政策"]),
    ("東京都は本日、新しい政策を発表した。", ["東京", "都", "は", "本日", "新しい", "政策", "を", "発表", "した"]),
    ("กรุงเทพมหานครประกาศนโยบายใหม่", ["กรุงเทพมหานคร", "ประกาศ", "นโยบาย", "ใหม่"]),
    ("서울시는 오늘 발표했다.", ["서울시는", "오늘", "발표했다."]),
])
def test_words(text, expected):
    assert words(text) == expected


def test_a_thai_article_counts_words_not_runs():
    text = "ฝนที่ตกหนักต่อเนื่องกว่าสามชั่วโมงเมื่อคืนทำให้เกิดน้ำท่วมขังในหลายเขตของกรุงเทพมหานคร " * 5
    assert 60 <= len(words(text)) <= 120 and len(text.split()) == 5


def test_scripts_without_a_dictionary_fall_back_to_character_pairs():
    javanese = "ꦥꦼꦩꦼꦫꦶꦤ꧀ꦠꦃ"  # Javanese has no spaces and ICU has no dictionary for it
    assert words(javanese) == pairs(javanese) == ["ꦥꦼꦩꦼ", "ꦩꦼꦫꦶ", "ꦫꦶꦤ꧀ꦠꦃ"]  # syllables with their marks
    assert pairs("ab") == ["ab"] and pairs("abc") == ["ab", "bc"]


def test_terms_lower_case_numbers_words_and_hangul_pairs():
    assert terms("Meta's $14.3bn AI-powered deal") == ["meta's", "$14.3", "bn", "ai-powered", "deal"]
    assert terms("서울시는 서울시가") == ["서울", "울시", "시는", "서울", "울시", "시가"]  # particles differ


def test_without_a_frequency_list_short_words_count_as_common():
    assert rarity("ใน", "th") < rarity("การ", "th") < rarity("ดอกเบี้ย", "th") <= 8.0


def test_rarity_works_for_languages_wordfreq_segments_with_extras():
    # wordfreq would need MeCab or jieba for these; newsbeam looks its ICU words up directly
    assert rarity("서울", "ko") < rarity("서울시는", "ko") < 8.0  # not listed: estimated from its characters
    assert rarity("東京", "ja") < 4 and rarity("的", "zh") == 0.5
    assert rarity("した", "ja") < 3  # MeCab's list has し and た, not ICU's した


@pytest.mark.parametrize("same_a, same_b, other, language", [
    ("北京市今天宣布，从7月1日起地铁票价上调至4元，市交通委表示这是十年来首次调价。",
     "北京地铁7月1日起涨价：起步价4元。北京市交通委称，这是地铁票价十年来第一次调整。",
     "广东省气象台发布台风橙色预警，台风“海燕”预计明天在湛江沿海登陆，风力可达12级。", "zh"),
    ("서울시는 7월 1일부터 지하철 기본요금을 1550원으로 인상한다고 밝혔다. 10년 만의 인상이다.",
     "서울 지하철 요금이 7월부터 1550원으로 오른다. 서울시는 기본요금 인상이 10년 만이라고 설명했다.",
     "부산에서 규모 4.2의 지진이 발생했다. 기상청은 해일 피해는 없을 것이라고 밝혔다.", "ko"),
    ("日本銀行は政策金利を0.5%に据え置くと発表した。植田和男総裁は記者会見で、物価の上昇が続いていると説明した。",
     "日銀が金利0.5%を維持。植田総裁は会見で「物価上昇は続いている」と述べ、追加の利上げを見送った。",
     "トヨタ自動車は、4月から6月までの営業利益が1兆円を超えたと発表した。円安が業績を押し上げたと説明した。",
     "ja"),  # ICU's した, と説明 are not in wordfreq's MeCab-built list: estimated from their characters
    ("ฝนที่ตกหนักต่อเนื่องกว่าสามชั่วโมงเมื่อคืนทำให้น้ำท่วมขังถนนสุขุมวิทและถนนรัชดาภิเษกสูงถึง 40 เซนติเมตร "
     "ผู้ว่าราชการกรุงเทพมหานคร ชัชชาติ สิทธิพันธุ์ กล่าวว่าจะระบายน้ำได้หมดภายในเช้าวันศุกร์",
     "น้ำท่วมขังถนนสุขุมวิทและรัชดาภิเษกหลังฝนตกหนักกว่าสามชั่วโมง ระดับน้ำสูง 40 เซนติเมตร ชัชชาติ สิทธิพันธุ์ "
     "ผู้ว่าราชการกรุงเทพมหานคร ระบุว่าเจ้าหน้าที่เร่งสูบน้ำและน่าจะระบายได้หมดในเช้าวันศุกร์",
     "ธนาคารแห่งประเทศไทยประกาศคงอัตราดอกเบี้ยนโยบายไว้ที่ร้อยละ 2.0 ในการประชุมคณะกรรมการนโยบายการเงินเมื่อวันพุธ "
     "โดยให้เหตุผลว่าเศรษฐกิจไทยยังฟื้นตัวได้ต่อเนื่องและอัตราเงินเฟ้ออยู่ในกรอบเป้าหมาย", "th"),  # no wordfreq list
])
def test_write_ups_of_one_event_are_closer_than_other_news(same_a, same_b, other, language):
    a, b, c = (term_vector(None, t, language) for t in (same_a, same_b, other))
    assert cosine(a, b) > 0.25 > max(cosine(a, c), cosine(b, c))


@given(st.text())
def test_text_without_spaceless_script_takes_the_short_way_to_the_same_units(text):
    """``words`` and ``terms`` skip per-chunk script checks when the text has no spaceless script; a
    Japanese word appended after a space forces the long way, and must only add its own units."""
    assert words(text + " 東京") == words(text) + ["東京"]
    assert terms(text + " 東京") == terms(text) + ["東京"]
