// HTTP/1.1 framing: see HTTPRequestParser.swift
