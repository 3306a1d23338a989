# Makes the fixtures: python3 make.py (needs openpyxl from PyPI). The files are committed;
# this is how they were made.
import datetime, zipfile
import openpyxl

wb = openpyxl.Workbook()
notes = wb.active
notes.title = "Notes"
notes["A1"] = "this sheet is not the codes"
codes = wb.create_sheet("卡密")
codes.append(["secret", "card_number", "batch", "expires_at"])
codes.append(["VIP-AAAA-0001", "6200000000000001", "b1", "2027-01-31"])
codes.append(["a&b<c>\"d'", "6200000000000002", "b1", None])
codes.append([None, None, None, None])  # an empty row
codes.append(["中文-密码-3", 6.2e15, "b2", datetime.date(2027, 3, 1)])
codes["A7"] = "GAP-ROW-7"
codes["D7"] = 42
codes["B8"] = True
codes["A9"] = "=1+1"
wb.save("codes.xlsx")

# A hand-made workbook: inline strings, rich text and phonetic runs in shared strings, a
# comment and CDATA, a custom date format, prefixed names, rows without `r`, stored entries.
files = {
    "[Content_Types].xml": '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>',
    "xl/workbook.xml": '<?xml version="1.0"?><x:workbook xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><x:sheets>'
        '<x:sheet name="Data" sheetId="7" r:id="rId3"/></x:sheets></x:workbook>',
    "xl/_rels/workbook.xml.rels": '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId3" Type="worksheet" Target="/xl/worksheets/data.xml"/></Relationships>',
    "xl/sharedStrings.xml": '<?xml version="1.0"?><sst><si><r><t>Rich </t></r><r><t xml:space="preserve">text</t></r></si>'
        '<si><t>東京</t><rPh sb="0" eb="2"><t>トウキョウ</t></rPh></si><si/></sst>',
    "xl/styles.xml": '<?xml version="1.0"?><styleSheet><numFmts count="2"><numFmt numFmtId="164" formatCode="yyyy/mm/dd"/>'
        '<numFmt numFmtId="165" formatCode="&quot;m&quot;0.00"/></numFmts>'
        '<cellStyleXfs count="1"><xf numFmtId="14"/></cellStyleXfs>'
        '<cellXfs count="4"><xf numFmtId="0"/><xf numFmtId="164"/><xf numFmtId="165"/><xf numFmtId="31"/></cellXfs></styleSheet>',
    "xl/worksheets/data.xml": '<?xml version="1.0"?><!-- made by hand --><x:worksheet xmlns:x="main"><x:sheetData>'
        '<x:row><x:c t="inlineStr"><x:is><x:t>inline &amp; &#x4E2D;&#25991;</x:t></x:is></x:c><x:c t="s"><x:v>0</x:v></x:c></x:row>'
        '<x:row><x:c t="s"><x:v>1</x:v></x:c><x:c t="str"><x:f>A1</x:f><x:v><![CDATA[<cdata>]]></x:v></x:c></x:row>'
        '<x:row r="5"><x:c r="B5" s="1"><x:v>46387</x:v></x:c><x:c r="C5" s="2"><x:v>1.5</x:v></x:c><x:c r="D5" s="3"><x:v>46000</x:v></x:c>'
        '<x:c r="E5" t="e"><x:v>#N/A</x:v></x:c><x:c r="F5" t="s"><x:v>2</x:v></x:c></x:row>'
        '</x:sheetData></x:worksheet>',
}
with zipfile.ZipFile("handmade.xlsx", "w", compression=zipfile.ZIP_STORED) as z:
    for name, text in files.items():
        z.writestr(name, text.encode("utf-8"))

# What Excel does to codes: a card number turned into a date, one turned into a float, an
# error cell; the good rows around them still import.
wb = openpyxl.Workbook()
sheet = wb.active
sheet.append(["secret", "card_number", "expires_at"])
sheet.append(["S-1", datetime.date(2027, 1, 1), None])
sheet.append(["S-2", 1.2345678901234567e19, None])
sheet.append(["S-3", "#N/A", None])
sheet.append(["S-4", "C-4", datetime.datetime(2027, 5, 6, 7, 8, 9)])
sheet.append(["S-4", "C-5", None])
wb.save("excel-damage.xlsx")
