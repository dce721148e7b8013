-- Wireshark / tshark dissector for the gateway's datagram protocol (docs/protocol.md), as written by
-- GET /admin/capture?format=pcapng (link type USER0, one datagram per packet, whole datagrams).
-- Use:  wireshark -X lua_script:tools/wireshark/gateway-dgram.lua capture.pcapng
--       tshark -X lua_script:tools/wireshark/gateway-dgram.lua -r capture.pcapng -T fields -e gd.kind -e gd.correlation_id
-- or copy it into ~/.local/lib/wireshark/plugins/. Display filters: gd, gd.kind == 1, gd.correlation_id == 0x…, gd.target.

local gd = Proto("gd", "Gateway datagram protocol")

local kinds = {
  [1] = "REQUEST", [2] = "RESPONSE", [3] = "ERROR", [4] = "PING", [5] = "PONG", [6] = "CANCEL",
  [7] = "RESPONSE_HEAD", [8] = "REQUEST_HEAD", [9] = "CHUNK", [10] = "END", [11] = "CREDIT",
}
local errors = {
  [1] = "MALFORMED", [2] = "NOT_FOUND", [3] = "OVERLOADED", [4] = "TOO_LARGE", [5] = "DEADLINE_EXCEEDED", [6] = "INTERNAL",
}

local f = gd.fields
f.magic = ProtoField.string("gd.magic", "Magic")
f.version = ProtoField.uint8("gd.version", "Version")
f.kind = ProtoField.uint8("gd.kind", "Kind", base.DEC, kinds)
f.flags = ProtoField.uint8("gd.flags", "Flags", base.HEX)
f.fragment = ProtoField.bool("gd.flags.fragment", "FRAGMENT", 8, nil, 0x01)
f.replay = ProtoField.bool("gd.flags.replay", "REPLAY", 8, nil, 0x02)
f.features = ProtoField.uint8("gd.features", "Features / reserved", base.HEX)
f.attempt = ProtoField.uint16("gd.attempt", "Attempt")
f.correlation_id = ProtoField.uint64("gd.correlation_id", "Correlation ID", base.HEX)
f.budget_ms = ProtoField.uint32("gd.budget_ms", "Budget (ms)")
f.payload_length = ProtoField.uint32("gd.payload_length", "Payload length")
f.fragment_offset = ProtoField.uint32("gd.fragment_offset", "Fragment offset")
f.method = ProtoField.string("gd.method", "Method")
f.target = ProtoField.string("gd.target", "Target")
f.status = ProtoField.uint16("gd.status", "Status")
f.header_count = ProtoField.uint16("gd.header_count", "Header fields")
f.header_name = ProtoField.string("gd.header.name", "Header name")
f.header_value = ProtoField.string("gd.header.value", "Header value")
f.error_code = ProtoField.uint16("gd.error_code", "Error code", base.DEC, errors)
f.error_message = ProtoField.string("gd.error_message", "Error message")
f.body = ProtoField.bytes("gd.body", "Body")

-- Reads header fields (count, then str8 name + str16 value each) from offset; returns the offset after them or nil.
local function headers(buf, tree, off, count)
  for _ = 1, count do
    if off + 1 > buf:len() then return nil end
    local nlen = buf(off, 1):uint()
    if off + 1 + nlen + 2 > buf:len() then return nil end
    local name = buf(off + 1, nlen)
    local vlen = buf(off + 1 + nlen, 2):uint()
    if off + 3 + nlen + vlen > buf:len() then return nil end
    local value = buf(off + 3 + nlen, vlen)
    local item = tree:add(f.header_name, name)
    item:append_text(": " .. value:string())
    tree:add(f.header_value, value)
    off = off + 3 + nlen + vlen
  end
  return off
end

function gd.dissector(buf, pinfo, tree)
  if buf:len() < 24 or buf(0, 2):string() ~= "GD" then return 0 end
  pinfo.cols.protocol = "GD"
  local t = tree:add(gd, buf(), "Gateway datagram")
  local kind = buf(3, 1):uint()
  local flags = buf(4, 1):uint()
  t:add(f.magic, buf(0, 2))
  t:add(f.version, buf(2, 1))
  t:add(f.kind, buf(3, 1))
  local ft = t:add(f.flags, buf(4, 1))
  ft:add(f.fragment, buf(4, 1))
  ft:add(f.replay, buf(4, 1))
  t:add(f.features, buf(5, 1))
  t:add(f.attempt, buf(6, 2))
  t:add(f.correlation_id, buf(8, 8))
  t:add(f.budget_ms, buf(16, 4))
  t:add(f.payload_length, buf(20, 4))
  local name = kinds[kind] or ("kind " .. kind)
  local info = string.format("%s id=%016x attempt=%d", name, buf(8, 8):uint64():tonumber(), buf(6, 2):uint())
  local off = 24
  if bit.band(flags, 1) ~= 0 then
    t:add(f.fragment_offset, buf(24, 4))
    local foff = buf(24, 4):uint()
    info = info .. string.format(" fragment@%d", foff)
    off = 28
    if foff ~= 0 then
      pinfo.cols.info = info
      t:add(f.body, buf(off))
      return buf:len()
    end
  end
  local p = buf:len() - off
  if kind == 1 and p >= 1 then -- REQUEST: str8 method, str16 target, str16 traceparent, str16 tracestate, u16 count, headers, body
    local mlen = buf(off, 1):uint()
    if p >= 3 + mlen then
      local method = buf(off + 1, mlen)
      local tlen = buf(off + 1 + mlen, 2):uint()
      local target = buf(off + 3 + mlen, math.min(tlen, p - 3 - mlen))
      t:add(f.method, method)
      t:add(f.target, target)
      info = info .. " " .. method:string() .. " " .. target:string()
    end
  elseif kind == 2 and p >= 4 then -- RESPONSE: u16 status, u16 header count, headers, body
    t:add(f.status, buf(off, 2))
    t:add(f.header_count, buf(off + 2, 2))
    info = info .. " " .. buf(off, 2):uint()
    local after = headers(buf, t, off + 4, buf(off + 2, 2):uint())
    if after and after < buf:len() then t:add(f.body, buf(after)) end
  elseif kind == 3 and p >= 2 then -- ERROR: u16 code, message
    t:add(f.error_code, buf(off, 2))
    info = info .. " " .. (errors[buf(off, 2):uint()] or tostring(buf(off, 2):uint()))
    if p >= 4 then
      local mlen = math.min(buf(off + 2, 2):uint(), p - 4)
      t:add(f.error_message, buf(off + 4, mlen))
    end
  end
  pinfo.cols.info = info
  return buf:len()
end

DissectorTable.get("wtap_encap"):add(wtap.USER0, gd)
